"""The grid itself, pure Python (stdlib and numpy, no Django, no I/O): the engine
(GRID_SPEC.md), the backtest walk and the form's preview. Of ours it imports only
``market.precision``; a backtest, a paper bot and a live bot all run this one engine."""
