"""The read-only web page under ``/ui/`` (see :mod:`openecr.api.ui.app`)."""

from openecr.api.ui.app import PREFIX, UiApp, UiAuth, wants_html

__all__ = ["PREFIX", "UiApp", "UiAuth", "wants_html"]
