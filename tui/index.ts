// The terminal console: the app (views, `:` commands, extension host) over the view layer, which
// alone touches blessed. `patchswarm tui` and the SSH server start it; extensions see only the API
// in tui/extensions.
export { createTuiApp, TuiApp, ConsoleData, UiWindow, type TuiAppOptions, type TuiExtensionOptions } from './app/index.js'
export { createUi, headless, Ui, type UiOptions } from './ui/index.js'
export { inProcessAccess, type ConsoleAccess } from './extensions/access.js'
export { defaultExtensionRoots } from './extensions/discovery.js'
