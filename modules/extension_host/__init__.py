"""A1111 extensions: install/update/remove from git, discovery and load order, the script runner
the generation engine calls, script_callbacks, and the assets (JS/CSS/localizations) the UI serves.

Nothing here runs at import time. `modules.extension_host.facade.bind(services)` (called once by the
composition root) builds the `ExtensionHost` and binds the A1111 facades (`modules.shared`,
`modules.scripts`, ...) to it; see docs/extensions.md.
"""
