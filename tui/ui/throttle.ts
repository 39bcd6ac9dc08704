// Render throttling: live data (200 events a second) must not mean 200 renders a second. Requests
// coalesce into at most one call per interval; the first after a quiet spell runs on the next turn
// of the event loop, so a burst of synchronous updates still renders once, and keys feel immediate.

export interface Throttle {
  /** Asks for a call; it happens within one interval at most, together with every other ask. */
  schedule (): void
  /** Calls now (dropping any pending call). */
  flush (): void
  /** Drops any pending call; later schedule() calls work again. */
  cancel (): void
  readonly pending: boolean
}

export function throttle (fn: () => void, intervalMs: number, now: () => number = () => performance.now()): Throttle {
  let last = -Infinity
  let timer: NodeJS.Timeout | undefined
  let immediate: NodeJS.Immediate | undefined

  const clear = () => {
    if (timer) clearTimeout(timer)
    if (immediate) clearImmediate(immediate)
    timer = undefined
    immediate = undefined
  }
  const run = () => {
    clear()
    last = now()
    fn()
  }

  return {
    schedule () {
      if (timer || immediate) return
      const wait = last + intervalMs - now()
      if (wait <= 0) immediate = setImmediate(run)
      else timer = setTimeout(run, wait)
    },
    flush: run,
    cancel: clear,
    get pending () { return timer !== undefined || immediate !== undefined }
  }
}
