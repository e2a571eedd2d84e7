// Candlestick charts (Lightweight Charts 5, served locally) for the bot and backtest pages and
// the new-bot and backtest forms.
//
// An element with data-chart="bot" or "backtest" and data-url gets a chart of the JSON there:
// candles, grid lines (price lines), resting orders (coloured by side) and fills (markers).
// On the bot page the websocket also carries JSON: {"type": "price"} moves the last candle,
// {"type": "grid"} redraws the lines, orders and fills, and (trailing) the grid's range over
// time from its moves. htmx ignores those messages; HTML
// fragments on the same socket are swapped by htmx as usual.
//
// data-chart="pair" (the forms) charts a pair's candles (data-url, data-symbol) with its live
// price from /ws/market/<PAIR>/, and draws the grid the form's preview (#grid-preview, swapped
// by htmx as the trader types) describes in its data-lines ("price:side ..."): each line, and
// the order it would rest, buy below the price and sell above. A new pair in the preview
// (data-symbol) loads that pair's candles.
(function () {
  "use strict";
  var LC = window.LightweightCharts;
  var COLORS = { buy: "#26a69a", sell: "#ef5350", line: "rgba(139,152,165,0.45)", text: "#e6edf3" };

  function num(x) { return typeof x === "number" ? x : parseFloat(x); }

  function makeChart(el) {
    var chart = LC.createChart(el, {
      autoSize: true,
      layout: { background: { color: "#182029" }, textColor: COLORS.text, attributionLogo: false },
      grid: { vertLines: { color: "#222c37" }, horzLines: { color: "#222c37" } },
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { borderColor: "#2a3542" },
      crosshair: { mode: 0 },
    });
    var view = { chart: chart, lines: [], last: null, focus: null };
    // The price scale fits the candles and the nearest resting buy and sell: the next orders to
    // fill stay in sight however wide the grid (scroll the price axis to see all of it).
    view.series = chart.addSeries(LC.CandlestickSeries, {
      upColor: COLORS.buy, downColor: COLORS.sell, borderVisible: false,
      wickUpColor: COLORS.buy, wickDownColor: COLORS.sell,
      autoscaleInfoProvider: function (original) {
        var res = original();
        var f = view.focus;
        if (res === null || !f) return res;
        res.priceRange.minValue = Math.min(res.priceRange.minValue, f.min);
        res.priceRange.maxValue = Math.max(res.priceRange.maxValue, f.max);
        return res;
      },
    });
    view.markers = LC.createSeriesMarkers(view.series, []);
    return view;
  }

  // Grid lines first, then each resting order drawn over its line in its side's colour.
  function drawGrid(view, lines, orders) {
    view.lines.forEach(function (l) { view.series.removePriceLine(l); });
    view.lines = [];
    var resting = {};
    (orders || []).forEach(function (o) { resting[String(num(o.price))] = o.side; });
    // The forms' chart labels only the range's ends and the next buy and sell: a label on
    // each of 50 lines would be unreadable.
    var labelled = view.el.dataset.chart === "pair" ? keyLines(lines || [], orders || []) : null;
    (lines || []).forEach(function (p) {
      var side = resting[String(num(p))];
      var label = labelled ? labelled[String(num(p))] : side;
      view.lines.push(view.series.createPriceLine({
        price: num(p),
        color: side ? COLORS[side] : COLORS.line,
        lineWidth: 1,
        lineStyle: side ? 0 : 2,
        axisLabelVisible: Boolean(label),
        title: label || "",
      }));
    });
    view.focus = focusRange(lines || [], orders || [], view.last ? view.last.close : null);
    view.el.dataset.gridLines = String(view.lines.length);
    view.el.dataset.restingOrders = String((orders || []).length);
  }

  // price → label for the lowest and highest line and the next buy and sell.
  function keyLines(lines, orders) {
    var out = {};
    var ps = lines.map(num);
    if (!ps.length) return out;
    out[String(Math.min.apply(null, ps))] = "lower";
    out[String(Math.max.apply(null, ps))] = "upper";
    var buys = orders.filter(function (o) { return o.side === "buy"; }).map(function (o) { return num(o.price); });
    var sells = orders.filter(function (o) { return o.side === "sell"; }).map(function (o) { return num(o.price); });
    if (buys.length) out[String(Math.max.apply(null, buys))] = "next buy";
    if (sells.length) out[String(Math.min.apply(null, sells))] = "next sell";
    return out;
  }

  // The nearest resting buy and sell, or the lines either side of the price when none rest.
  function focusRange(lines, orders, price) {
    var buys = orders.filter(function (o) { return o.side === "buy"; }).map(function (o) { return num(o.price); });
    var sells = orders.filter(function (o) { return o.side === "sell"; }).map(function (o) { return num(o.price); });
    var ps = lines.map(num);
    if (price !== null) {
      if (!buys.length) buys = ps.filter(function (p) { return p < price; });
      if (!sells.length) sells = ps.filter(function (p) { return p > price; });
    }
    var lo = buys.length ? Math.max.apply(null, buys) : null;
    var hi = sells.length ? Math.min.apply(null, sells) : null;
    if (lo === null && hi === null) return null;
    return { min: lo === null ? hi : lo, max: hi === null ? lo : hi };
  }

  // The grid moving (trailing): its lowest and highest line over time as two step lines, from
  // the range before the first move (startLines) through each move ([time_ms, "up"|"down"|
  // "triggered", lowest, highest]) to the last bar. Drawn only once the grid has moved, and
  // kept in sight: the price scale widens to the range's path.
  function drawMoves(view, startLines, moves, barSeconds) {
    moves = (moves || []).filter(function (m) { return m && m.length >= 4; });
    var moved = moves.some(function (m) { return m[1] === "up" || m[1] === "down"; });
    view.el.dataset.gridMoves = String(moves.filter(function (m) { return m[1] !== "triggered"; }).length);
    if (!moved || !startLines || startLines.length < 2 || !view.first) {
      if (view.band) { view.band.forEach(function (s) { s.setData([]); }); }
      return;
    }
    if (!view.band) {
      var look = {
        color: "rgba(163,113,247,0.85)", lineWidth: 1, lineType: (LC.LineType && LC.LineType.WithSteps) || 1,
        priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
      };
      view.band = [view.chart.addSeries(LC.LineSeries, look), view.chart.addSeries(LC.LineSeries, look)];
    }
    var step = barSeconds || 60;
    var low = [{ time: view.first.time, value: num(startLines[0]) }];
    var high = [{ time: view.first.time, value: num(startLines[1]) }];
    moves.forEach(function (m) {
      var t = Math.floor(m[0] / 1000);
      t = Math.max(t - (t % step), view.first.time);
      if (low[low.length - 1].time === t) { low.pop(); high.pop(); } // the last move of a bar
      low.push({ time: t, value: num(m[2]) });
      high.push({ time: t, value: num(m[3]) });
    });
    var end = view.last ? view.last.time : null;
    if (end !== null && end > low[low.length - 1].time) {
      low.push({ time: end, value: low[low.length - 1].value });
      high.push({ time: end, value: high[high.length - 1].value });
    }
    view.band[0].setData(low);
    view.band[1].setData(high);
  }

  function drawFills(view, fills, barSeconds) {
    var markers = (fills || []).map(function (f) {
      var t = Array.isArray(f) ? f[0] : Math.floor(f.time_ms / 1000);
      var side = Array.isArray(f) ? f[1] : f.side;
      var price = Array.isArray(f) ? f[2] : num(f.price);
      if (barSeconds) t = t - (t % barSeconds);
      return side === "buy"
        ? { time: t, position: "belowBar", color: COLORS.buy, shape: "arrowUp", text: "B" }
        : { time: t, position: "aboveBar", color: COLORS.sell, shape: "arrowDown", text: "S" };
    });
    markers.sort(function (a, b) { return a.time - b.time; });
    view.markers.setMarkers(markers);
    view.el.dataset.fills = String(markers.length);
  }

  function toBar(c) {
    if (Array.isArray(c)) return { time: c[0], open: c[1], high: c[2], low: c[3], close: c[4] };
    return { time: Math.floor(c.time_ms / 1000), open: num(c.open), high: num(c.high), low: num(c.low), close: num(c.close) };
  }

  function load(view) {
    var url = view.el.dataset.url;
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (url !== view.el.dataset.url) return; // another pair was chosen meanwhile
        var bars = (data.candles || []).map(toBar);
        view.series.setData(bars);
        view.last = bars.length ? bars[bars.length - 1] : null;
        view.first = bars.length ? bars[0] : null;
        if (view.el.dataset.chart === "pair") { showPrice(view, data.price); drawPreview(view); }
        else drawGrid(view, data.lines, data.orders);
        if (view.el.dataset.chart === "backtest" && (data.lines || []).length) {
          var ps = data.lines.map(num); // a backtest shows its whole grid
          view.focus = { min: Math.min.apply(null, ps), max: Math.max.apply(null, ps) };
        }
        view.chart.priceScale("right").applyOptions({ autoScale: true });
        drawFills(view, data.fills, data.bar_seconds || 60);
        if (view.el.dataset.chart !== "pair") drawMoves(view, data.start_lines, data.moves, data.bar_seconds || 60);
        if (bars.length) view.chart.timeScale().fitContent();
        view.el.dataset.candles = String(bars.length);
        view.el.dataset.ready = "1";
      })
      .catch(function (err) { view.el.dataset.error = String(err); });
  }

  // A live price: extend the current bar, or start the next one.
  function onPrice(view, msg) {
    var c = msg.candle;
    var bar = c ? toBar(c) : null;
    var price = num(msg.price);
    var t = Math.floor(msg.time_ms / 60000) * 60;
    if (!bar) {
      var last = view.last;
      bar = last && last.time === t
        ? { time: t, open: last.open, high: Math.max(last.high, price), low: Math.min(last.low, price), close: price }
        : { time: t, open: price, high: price, low: price, close: price };
    }
    if (view.last && bar.time < view.last.time) return; // an old tick after a reload: ignore
    view.series.update(bar);
    view.last = bar;
  }

  // --- the forms' pair chart -------------------------------------------------------------------
  var pairViews = [];

  // The grid the preview describes: {symbol, lines: [price], orders: [{price, side}]}.
  function previewGrid() {
    var el = document.getElementById("grid-preview");
    if (!el) return null;
    var lines = [];
    var orders = [];
    (el.dataset.lines || "").trim().split(/\s+/).forEach(function (item) {
      if (!item) return;
      var parts = item.split(":");
      lines.push(parts[0]);
      if (parts[1] === "buy" || parts[1] === "sell") orders.push({ price: parts[0], side: parts[1] });
    });
    var marks = [];
    (el.dataset.marks || "").trim().split(/\s+/).forEach(function (item) {
      var parts = item.split(":");
      if (parts.length === 2 && MARKS[parts[1]]) marks.push({ price: parts[0], kind: parts[1] });
    });
    return { symbol: el.dataset.symbol || "", lines: lines, orders: orders, marks: marks };
  }

  // The preview's trigger and trailing (data-marks "price:kind ..."): where the bot waits,
  // the line a shift would add next, and where trailing stops. Removed with the grid's lines.
  var MARKS = {
    "trigger": { color: "#e3b341", style: 0, title: "trigger" },
    "next-up": { color: "#58a6ff", style: 1, title: "next line up" },
    "up-stop": { color: "#a371f7", style: 2, title: "trailing up stops" },
    "next-down": { color: "#58a6ff", style: 1, title: "next line down" },
    "down-stop": { color: "#a371f7", style: 2, title: "trailing down stops" },
  };

  function drawMarks(view, marks) {
    (marks || []).forEach(function (m) {
      var look = MARKS[m.kind];
      view.lines.push(view.series.createPriceLine({
        price: num(m.price), color: look.color, lineWidth: 2, lineStyle: look.style,
        axisLabelVisible: true, title: look.title,
      }));
    });
    view.el.dataset.marks = (marks || []).map(function (m) { return m.kind; }).join(" ");
  }

  function drawPreview(view) {
    var grid = previewGrid();
    if (!grid) return;
    if (grid.symbol && grid.symbol !== view.el.dataset.symbol) {
      choosePair(view, grid.symbol);
      return; // drawn once the new pair's candles are in
    }
    drawGrid(view, grid.lines, grid.orders);
    drawMarks(view, grid.marks);
    if (grid.lines.length) { // the whole grid in sight, with the candles, trigger and next lines
      var ps = grid.lines.map(num).concat(grid.marks.filter(function (m) {
        return m.kind === "trigger" || m.kind.indexOf("next") === 0;
      }).map(function (m) { return num(m.price); }));
      view.focus = { min: Math.min.apply(null, ps), max: Math.max.apply(null, ps) };
    }
    view.chart.priceScale("right").applyOptions({ autoScale: true });
  }

  // The price now beside the pair's name (the card's [data-chart-price]), as the pages write it.
  function showPrice(view, price) {
    var card = view.el.closest(".chart-card");
    var slot = card && card.querySelector("[data-chart-price]");
    if (!slot) return;
    var p = price === null || price === undefined ? NaN : num(price);
    slot.textContent = isNaN(p) ? "" : "now " + p.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 8 });
  }

  function choosePair(view, symbol) {
    var url = view.el.dataset.url.split("?")[0] + "?symbol=" + encodeURIComponent(symbol);
    view.el.dataset.symbol = symbol;
    view.el.dataset.url = url;
    var card = view.el.closest(".chart-card");
    var name = card && card.querySelector("[data-chart-symbol]");
    if (name) name.textContent = symbol;
    view.el.dataset.ready = "";
    view.series.setData([]);
    view.last = null;
    load(view);
    watch(view);
  }

  // The pair's live price moves the last candle (the market socket sends {"type": "price"}).
  function watch(view) {
    if (view.socket) { view.socket.onclose = null; view.socket.close(); view.socket = null; }
    var pair = (view.el.dataset.symbol || "").replace(/[^A-Za-z0-9]/g, "");
    if (!pair || !window.WebSocket) return;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/market/" + pair + "/");
    socket.onmessage = function (e) {
      var msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      if (msg.type === "price" && view.last) onPrice(view, msg);
    };
    socket.onclose = function () { // the server went away: try again in a while
      view.socket = null;
      setTimeout(function () { if (!view.socket && document.contains(view.el)) watch(view); }, 10000);
    };
    view.socket = socket;
  }

  function init(el) {
    if (el.dataset.chartInit || !LC) return;
    el.dataset.chartInit = "1";
    var view = makeChart(el);
    view.el = el;
    load(view);
    if (el.dataset.chart === "pair") {
      pairViews.push(view);
      watch(view);
      return;
    }
    if (el.dataset.chart !== "bot") return;
    var socketElt = el.closest("[ws-connect]");
    if (!socketElt) return;
    socketElt.addEventListener("htmx:wsBeforeMessage", function (e) {
      var text = e.detail.message;
      if (typeof text !== "string" || text.charAt(0) !== "{") return; // HTML: htmx swaps it
      e.preventDefault();
      var msg;
      try { msg = JSON.parse(text); } catch (err) { return; }
      if (msg.type === "price") onPrice(view, msg);
      else if (msg.type === "grid") {
        drawGrid(view, msg.lines, msg.orders);
        drawFills(view, msg.fills, 60);
        drawMoves(view, msg.start_lines, msg.moves, 60);
      }
    });
    // After a reconnect, fetch the candles missed while away (the grid comes pushed).
    socketElt.addEventListener("aibo:live", function (e) { if (e.detail.reconnected) load(view); });
  }

  function scan(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("[data-chart]").forEach(init);
  }
  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:load", function (e) {
    scan(e.target.parentNode || document);
    if (e.target.id === "grid-preview") {
      pairViews.forEach(function (view) { if (view.el.dataset.ready) drawPreview(view); });
    }
    // A pair chosen on the backtest form (the pair's history box says which, as listed).
    var pair = e.target.id === "pair-history" ? e.target.dataset.pair : "";
    if (pair) {
      pairViews.forEach(function (view) { if (pair !== view.el.dataset.symbol) choosePair(view, pair); });
    }
  });
  if (document.readyState !== "loading") scan(document);
})();
