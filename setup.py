"""The plugin tree lives in plugins/ (one folder per plugin, as users browse it) but is imported as
the package ``airisd_plugins``: setuptools' static configuration cannot rename a found package, so
this file maps it."""

from setuptools import find_packages, setup

core = find_packages(".", include=["airisd", "airisd.*"])
plugin_dirs = find_packages(".", include=["plugins", "plugins.*"])
plugins = ["airisd_plugins" + name[len("plugins"):] for name in plugin_dirs]

setup(
    packages=core + plugins,
    package_dir={"airisd_plugins": "plugins"},
)
