"""Sphinx additions of this book, loaded through ``sphinx.local_extensions`` in _config.yml.

Jupyter Book 1 registers sphinx-thebe's inline configuration script twice, so every page
declared ``const THEBE_JS_URL`` twice and logged a console error. Each page's scripts are
de-duplicated here, in their order.
"""

from __future__ import annotations


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # An inline script has no file name (None from one extension, "" from another).
        key = (script.filename or "", repr(script.attributes))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
