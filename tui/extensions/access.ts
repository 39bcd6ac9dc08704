// How a console session reaches the admin API, acting as its admin: in-process (`--embedded`, the
// SSH server inside the console) or over the console's socket (RpcClient has this shape already).
import { from, isObservable, throwError, type Observable } from 'rxjs'
import { PatchswarmError } from '../../lib/errors.js'
import { dispatcher, type AdminApi } from '../../lib/console/api.js'

export interface ConsoleAccess {
  /** `namespace.method` with the parameters after the admin id. */
  call (method: string, params: unknown[]): Promise<unknown>
  /** A `namespace.method$` subscription. */
  subscribe (method: string, params: unknown[]): Observable<unknown>
}

/** The admin API in this process, every call made as `admin`. */
export function inProcessAccess (api: AdminApi, admin: string): ConsoleAccess {
  const dispatch = dispatcher(api)
  const run = (method: string, params: unknown[]): Promise<unknown> | Observable<unknown> => {
    try { return dispatch(admin, method, params) } catch (err) { return Promise.reject(err) }
  }
  return {
    async call (method, params) {
      if (method.endsWith('$')) throw PatchswarmError.BAD_ARGUMENT(`${method} is a subscription: subscribe to it`)
      return run(method, params)
    },
    subscribe (method, params) {
      if (!method.endsWith('$')) return throwError(() => PatchswarmError.BAD_ARGUMENT(`${method} is not a subscription: call it`))
      const r = run(method, params)
      return isObservable(r) ? r : from(r)
    }
  }
}
