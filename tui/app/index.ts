// The console app on a screen of the view layer.
export { createTuiApp, TuiApp, type TuiAppOptions, type TuiExtensionOptions } from './app.js'
export { ConsoleData, rootsOf, sumKpis, tenantMatches, type ConsoleDataOptions } from './data.js'
export { UiWindow } from './window.js'
