"""The link notice: every value a link asked for and could not get is named."""

from __future__ import annotations

from components.common import LinkFallback, link_notice


def _text(component) -> str:
    if isinstance(component, str):
        return component
    children = getattr(component, "children", None)
    if children is None:
        return ""
    if not isinstance(children, list | tuple):
        children = [children]
    return "".join(_text(c) for c in children)


def test_no_fallback_gives_no_notice():
    assert link_notice([]) is None


def test_notice_names_key_value_and_what_is_shown_instead():
    notice = link_notice(
        [
            LinkFallback("tumor_type", "Tumor type", "martian", "all tumor types"),
            LinkFallback("metric", "NK metric", "foo", "NK among lymphocytes"),
        ]
    )
    text = _text(notice)
    assert "Tumor type “martian”" in text
    assert "tumor_type=martian" in text
    assert "showing all tumor types instead" in text
    assert "NK metric “foo”" in text
    assert "showing NK among lymphocytes instead" in text
