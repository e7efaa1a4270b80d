"""Every hook airisd calls, in one place.

Hooks are synchronous and only *register* things: the core runs the plugins' async lifecycles in
its own task group. A plugin package exposes a module (or object) with ``@hookimpl`` functions and
names it in the ``airisd`` entry-point group:

    [project.entry-points.airisd]
    my_input = "my_package.my_input"

Built-in plugins are registered through the same entry-point group, from airisd's own metadata.
Set ``AIRISD_TRACE_HOOKS=1`` to log every hook call and its result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from airisd.plugin import Plugin

PROJECT = "airisd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration ------------------------------------------------------------------------------


@hookspec
def airisd_plugin_classes() -> list[type[Plugin]]:
    """Return the plugin classes this module provides.

    Each class subclasses ``airisd.plugin.Input``, ``Processor``, ``Output`` or ``AlertChannel`` and
    sets ``name`` (unique within its kind) and ``Config``. Called once, when the registry is built.
    Return rule: every implementation's list is collected; a (kind, name) pair seen twice is an
    error naming both packages.
    """
    raise NotImplementedError
