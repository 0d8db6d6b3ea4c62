# The single source of the package version; hatchling reads it at build time.
__version__ = "0.1.0.dev0"
