from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.forms import (
    AuthenticationForm,
    BaseUserCreationForm,
    PasswordResetForm,
)

from accounts import throttle, two_factor
from accounts.models import ExchangeCredential, User

PASSWORD_MISMATCH = "The two passwords do not match: type the same password in both boxes."


class NewPasswordErrorsUnderTheirBox:
    """Each error under the box it is about. Django checks a new password as typed in the
    confirmation box and shows what is wrong with it ("too short", "too common") there; here
    the password box itself is checked, so the confirmation only ever says "do not match"."""

    def validate_password_for_user(self, user: Any, password_field_name: str = "password2") -> None:
        # password2 → password1, new_password2 → new_password1
        password_box = password_field_name.removesuffix("2") + "1"
        super().validate_password_for_user(user, password_box)  # type: ignore[misc]


class RegistrationForm(NewPasswordErrorsUnderTheirBox, BaseUserCreationForm):
    """An email address and a password. Whether the address is taken is not a form error: the
    page must answer the same for a taken address and a new one (the view decides)."""

    error_messages = {**BaseUserCreationForm.error_messages, "password_mismatch": PASSWORD_MISMATCH}

    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()

    def validate_unique(self) -> None:
        pass


class PasswordChangeForm(NewPasswordErrorsUnderTheirBox, auth_forms.PasswordChangeForm):
    error_messages = {
        **auth_forms.PasswordChangeForm.error_messages,
        "password_mismatch": PASSWORD_MISMATCH,
    }


class SetPasswordForm(NewPasswordErrorsUnderTheirBox, auth_forms.SetPasswordForm):
    """The new password chosen through a reset link."""

    error_messages = {
        **auth_forms.SetPasswordForm.error_messages,
        "password_mismatch": PASSWORD_MISMATCH,
    }


class ThrottledPasswordResetForm(PasswordResetForm):
    """Django's reset form, sending at most ``MAILS_PER_ADDRESS_PER_HOUR`` mails to one
    address an hour."""

    def get_users(self, email: str) -> Any:
        if not throttle.may_mail(email):
            return iter(())
        return super().get_users(email)


class EmailLoginForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email address",
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )


class CodeForm(forms.Form):
    """A code from the authenticator app, or (where it may be) a recovery code."""

    code = forms.CharField(
        max_length=32,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "autocapitalize": "off",
                "spellcheck": "false",
            }
        ),
        error_messages={"required": "Enter the code."},
    )

    def __init__(self, *args: Any, label: str, autofocus: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["code"].label = label
        if autofocus:
            self.fields["code"].widget.attrs["autofocus"] = True

    def clean_code(self) -> str:
        return two_factor.normalized(self.cleaned_data["code"])


class TwoFactorOffForm(CodeForm):
    """Turning two-factor sign-in off: the password and a code."""

    field_order = ["password", "code"]
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        error_messages={"required": "Enter your password."},
    )


EXCHANGES = [("binance", "Binance")]
KEY_MIN, KEY_MAX = 16, 512


def _key_field(label: str, help_text: str) -> forms.CharField:
    # A password input that never re-renders: a failed submit must not echo the key back.
    widget = forms.PasswordInput(
        render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}
    )
    return forms.CharField(
        label=label,
        help_text=help_text,
        widget=widget,
        strip=True,
        error_messages={"required": f"Paste the {label.lower()} from your exchange account."},
    )


class CredentialForm(forms.Form):
    """A new set of exchange keys. The keys come out stripped; the view encrypts and verifies."""

    label = forms.CharField(
        max_length=60,
        help_text="Your name for this key, e.g. “Main account”.",
        error_messages={"required": "Give these keys a label, e.g. “Main account”."},
    )
    exchange = forms.ChoiceField(choices=EXCHANGES, initial="binance")
    testnet = forms.BooleanField(
        required=False,
        label="Spot testnet key",
        help_text="A key made on testnet.binance.vision: its bots trade the testnet's play money, "
        "never real funds.",
    )
    api_key = _key_field("API key", "From the API management page of your exchange account.")
    secret = _key_field(
        "Secret key",
        "Shown once by the exchange; aibo stores it encrypted and never shows it again.",
    )

    def __init__(self, *args: Any, owner: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_label(self) -> str:
        label: str = self.cleaned_data["label"]
        if ExchangeCredential.objects.owned_by(self.owner).filter(label__iexact=label).exists():
            raise forms.ValidationError(
                f"You already have exchange keys labelled “{label}”. Choose another label."
            )
        return label

    def clean_api_key(self) -> str:
        return _clean_key(self.cleaned_data["api_key"], "API key")

    def clean_secret(self) -> str:
        return _clean_key(self.cleaned_data["secret"], "secret key")


def _clean_key(value: str, name: str) -> str:
    # The messages never quote the value: they end up in the page.
    if any(c.isspace() for c in value):
        raise forms.ValidationError(
            f"The {name} contains spaces or line breaks; copy it again from the exchange."
        )
    if len(value) < KEY_MIN:
        raise forms.ValidationError(
            f"This {name} is too short ({len(value)} characters; at least {KEY_MIN}). "
            "Check that you copied all of it."
        )
    if len(value) > KEY_MAX:
        raise forms.ValidationError(
            f"This {name} is too long ({len(value)} characters; at most {KEY_MAX}). "
            "Check that you copied only the key."
        )
    return value
