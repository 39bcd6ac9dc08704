// Rollouts: the list (state, current phase, live progress) and one rollout opened (its phases with
// their thresholds and progress bars, what it is waiting for, its history). Pause and resume are
// plain keys; abort and rollback are dangerous: they ask first with Cancel focused, and under
// --readonly none of the four exists (the console changes nothing from a read-only session).
import type { KeyAction, Region, Span, Table, Text, View } from '../ui/index.js'
import type { RolloutSummary } from '../../lib/console/api.js'
import type { RolloutHistoryEntry } from '../../lib/rollout/store.js'
import { Feeds, type AppContext } from './context.js'
import { minute, minutes, outcome, pct, progressBar, stateSpan, stateTone } from './format.js'

const release = (r: RolloutSummary) => `${r.release.name} ${r.release.packageVersion}`

/** The phase a rollout is at: the active one, else the last that started, else the first. */
export function currentPhase (r: RolloutSummary): { index: number, name: string } {
  let i = r.phases.findIndex((p) => p.state === 'active')
  if (i === -1) i = r.phases.reduce((at, p, j) => p.startedAt ? j : at, 0)
  return { index: i, name: r.phases[i]?.name ?? '' }
}

/**
 * The actions on a rollout, the same in the list and in an opened rollout (one key table: the same
 * names, keys and questions). `pick` is the rollout they act on; `:rollout.abort <id>` names another.
 */
export function rolloutActions (ctx: AppContext, pick: () => RolloutSummary | undefined): KeyAction[] {
  if (ctx.readonly) return []
  const idOf = (args: readonly string[]) => args[0] ?? pick()?.id
  const describe = (args: readonly string[]) => {
    const id = idOf(args)
    const r = ctx.data.rollouts.find((x) => x.id === id) ?? pick()
    return { id, what: r && r.id === id ? `${r.id} (${release(r)} → ${r.target.tenant || 'the organisation'})` : String(id) }
  }
  const change = (verb: string, method: string) => async (args: readonly string[]) => {
    const id = idOf(args)
    if (!id) return
    const r = await ctx.act<{ id: string, state: string }>(`${verb} ${id}`, method, id)
    if (r) ctx.ui.message(`rollout ${r.id}: ${r.state}`)
  }
  // The rollout a dangerous question named is the one acted on, whatever the live list did meanwhile.
  let asked: string | undefined
  const ask = (args: readonly string[], text: (what: string) => string) => {
    const d = describe(args)
    asked = d.id
    return text(d.what)
  }
  const confirmed = (verb: string, method: string) => async (args: readonly string[]) => {
    const id = args[0] ?? asked
    asked = undefined
    await change(verb, method)(id ? [id] : args)
  }
  return [
    {
      action: 'rollout.pause', key: 'p', hint: 'pause', when: 'rolloutState == running',
      description: 'Pause the rollout: no new phase starts; what was assigned stays assigned',
      complete: (partial) => ctx.data.rollouts.map((r) => r.id).filter((id) => id.startsWith(partial)),
      run: change('pause', 'rollouts.pause')
    },
    {
      action: 'rollout.resume', key: 'r', hint: 'resume', when: 'rolloutState == paused || rolloutState == halted',
      description: 'Resume a paused or halted rollout (a halted phase accepts the errors seen so far)',
      complete: (partial) => ctx.data.rollouts.map((r) => r.id).filter((id) => id.startsWith(partial)),
      run: change('resume', 'rollouts.resume')
    },
    {
      action: 'rollout.abort', key: 'x', hint: 'abort', dangerous: true,
      when: 'rolloutState == running || rolloutState == paused || rolloutState == halted',
      description: 'Abort the rollout: open work is cancelled and nothing more is assigned',
      confirm: (args) => ask(args, (w) => `Abort rollout ${w}? Endpoints that have not installed it get nothing more. This cannot be undone.`),
      complete: (partial) => ctx.data.rollouts.map((r) => r.id).filter((id) => id.startsWith(partial)),
      run: confirmed('abort', 'rollouts.abort')
    },
    {
      action: 'rollout.rollback', key: 'b', hint: 'rollback', dangerous: true,
      when: 'rolloutState && rolloutState != rolled-back',
      description: 'Roll the rollout back: every endpoint of a started phase uninstalls it',
      confirm: (args) => ask(args, (w) => `Roll back rollout ${w}? Every endpoint of a phase that started is told to roll the package back.`),
      complete: (partial) => ctx.data.rollouts.map((r) => r.id).filter((id) => id.startsWith(partial)),
      run: confirmed('roll back', 'rollouts.rollback')
    }
  ]
}

export class RolloutsView implements View {
  readonly id = 'rollouts'
  readonly keys: readonly KeyAction[]
  readonly #ctx: AppContext
  readonly #tenant: string
  readonly #feeds: Feeds
  #table: Table<RolloutSummary> | undefined

  /** `tenant`: only rollouts whose target lies under it. */
  constructor (ctx: AppContext, tenant = '') {
    this.#ctx = ctx
    this.#tenant = tenant.replace(/\/+$/, '')
    this.#feeds = new Feeds(ctx, () => this.title)
    this.keys = rolloutActions(ctx, () => this.#table?.selected)
  }

  get title (): string { return this.#tenant ? `Rollouts ${this.#tenant}` : 'Rollouts' }

  context (): Record<string, unknown> {
    return { rolloutState: this.#table?.selected?.state }
  }

  mount (region: Region): void {
    // Target and Updated only where the ids and release names still fit beside them.
    const wide = region.width >= 130
    this.#table = region.table<RolloutSummary>({
      title: 'Rollouts',
      key: (r) => r.id,
      empty: 'no rollouts (patchswarm rollout create …)',
      tone: (r) => r.state === 'halted' ? 'bad' : undefined,
      // The target too, also when the screen is too narrow to show it.
      search: (r) => [r.id, release(r), r.target.tenant, r.state, currentPhase(r).name].join('\t'),
      onOpen: (r) => { void this.#ctx.open('rollout', [r.id]) },
      columns: [
        { title: 'Id', value: (r) => r.id, min: 14 },
        { title: 'Release', value: release, min: 10 },
        ...(wide ? [{ title: 'Target', value: (r: RolloutSummary) => r.target.tenant || '(all)', min: 10 }] : []),
        { title: 'State', width: 11, value: (r) => r.state, format: (r) => stateSpan(r.state) },
        { title: 'Phase', width: wide ? 16 : 9, value: (r) => currentPhase(r).index, format: (r) => `${currentPhase(r).name} ${currentPhase(r).index + 1}/${r.phases.length}` },
        { title: 'Progress', width: wide ? 24 : 10, value: (r) => (r.counts.installed ?? 0) / Math.max(1, r.total), format: (r) => progressBar(r.counts, r.total, wide ? 24 : 10) },
        { title: 'Done', width: 9, align: 'right', value: (r) => r.counts.installed ?? 0, format: (r) => `${r.counts.installed ?? 0}/${r.total}` },
        { title: 'Fail', width: 5, align: 'right', value: (r) => outcome(r.counts, r.total).failed },
        ...(wide ? [{ title: 'Updated', width: 16, value: (r: RolloutSummary) => r.updatedAt, format: (r: RolloutSummary) => minute(r.updatedAt) }] : [])
      ]
    })
    this.#feeds.watch(this.#ctx.data.rollouts$, (list) => {
      // Newest change first (the table's own sort, `o`, can change that).
      const shown = this.#tenant ? list.filter((r) => r.target.tenant === this.#tenant || r.target.tenant.startsWith(`${this.#tenant}/`)) : [...list]
      this.#table!.setRows(shown.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt) || a.id.localeCompare(b.id)))
    })
  }

  unmount (): void {
    this.#feeds.stop()
  }
}

interface PhaseRow {
  index: number
  phase: RolloutSummary['phases'][number]
  current: boolean
}

export class RolloutView implements View {
  readonly id = 'rollout'
  readonly keys: readonly KeyAction[]
  readonly #ctx: AppContext
  readonly #rid: string
  readonly #feeds: Feeds
  #rollout: RolloutSummary | undefined
  #head: Text | undefined
  #phases: Table<PhaseRow> | undefined
  #history: Table<RolloutHistoryEntry & { n: number }> | undefined
  #revision = 0
  #width = 80

  constructor (ctx: AppContext, id: string) {
    this.#ctx = ctx
    this.#rid = id
    this.#feeds = new Feeds(ctx, () => this.title)
    this.keys = rolloutActions(ctx, () => this.#rollout)
  }

  get title (): string { return `Rollout ${this.#rid}` }

  context (): Record<string, unknown> {
    return { rolloutState: this.#rollout?.state }
  }

  mount (region: Region): void {
    const [head, phases, history] = region.split('rows', [6, '*', Math.max(4, Math.floor(region.height / 3))])
    this.#width = region.width
    region.onResize(({ width }) => { this.#width = width; this.#draw() })
    this.#head = head!.text()
    const barWidth = Math.max(8, Math.min(30, region.width - 66))
    this.#phases = phases!.table<PhaseRow>({
      title: 'Phases',
      key: (p) => String(p.index),
      tone: (p) => p.phase.state === 'failed' ? 'bad' : undefined,
      columns: [
        { title: '#', width: 2, align: 'right', value: (p) => p.index + 1 },
        { title: 'Phase', value: (p) => p.phase.name, format: (p) => [{ text: p.phase.name, tone: p.current ? 'bold' : undefined }], min: 8 },
        { title: 'State', width: 9, value: (p) => p.phase.state, format: (p) => stateSpan(p.phase.state) },
        { title: 'Size', width: 6, align: 'right', value: (p) => p.phase.size },
        { title: 'Progress', width: barWidth, value: (p) => (p.phase.counts.installed ?? 0) / Math.max(1, p.phase.size), format: (p) => progressBar(p.phase.counts, p.phase.size, barWidth) },
        { title: 'Inst', width: 5, align: 'right', value: (p) => (p.phase.counts.installed ?? 0) / Math.max(1, p.phase.size), format: (p) => pct((p.phase.counts.installed ?? 0) / Math.max(1, p.phase.size)) },
        { title: 'Fail', width: 5, align: 'right', value: (p) => outcome(p.phase.counts, p.phase.size).failed / Math.max(1, p.phase.size), format: (p) => pct(outcome(p.phase.counts, p.phase.size).failed / Math.max(1, p.phase.size)) },
        { title: 'Needs', width: 6, align: 'right', value: (p) => p.phase.successThreshold, format: (p) => `≥${pct(p.phase.successThreshold)}` },
        { title: 'Halts', width: 6, align: 'right', value: (p) => p.phase.errorThreshold, format: (p) => `≥${pct(p.phase.errorThreshold)}` },
        { title: 'Soak', width: 6, align: 'right', value: (p) => p.phase.minSoakMinutes, format: (p) => minutes(p.phase.minSoakMinutes) }
      ]
    })
    // One revision can hold several changes (created, then its first phase started): keyed by position.
    this.#history = history!.table<RolloutHistoryEntry & { n: number }>({
      title: 'History',
      key: (h) => String(h.n),
      sort: { column: '#', descending: true },
      empty: 'loading…',
      columns: [
        { title: '#', width: 3, align: 'right', value: (h) => h.n },
        { title: 'Rev', width: 4, align: 'right', value: (h) => h.revision },
        { title: 'Time', width: 16, value: (h) => h.at, format: (h) => minute(h.at) },
        { title: 'By', width: 10, value: (h) => h.by ?? 'console' },
        { title: 'Change', value: (h) => changeText(h.change) }
      ]
    })
    this.#feeds.watch(this.#ctx.data.rollouts$, (list) => {
      this.#rollout = list.find((r) => r.id === this.#rid)
      this.#draw()
      if (this.#rollout && this.#rollout.revision !== this.#revision) {
        this.#revision = this.#rollout.revision
        this.#ctx.data.call<RolloutHistoryEntry[]>('rollouts.history', this.#rid).then(
          (h) => this.#history?.setRows(h.map((e, n) => ({ ...e, n: n + 1 }))),
          (err) => this.#ctx.ui.message(`history of ${this.#rid}: ${String((err as Error).message ?? err)}`, 'error'))
      }
    })
  }

  #draw (): void {
    const r = this.#rollout
    if (!r) {
      this.#head?.setLines([[{ text: `No rollout ${this.#rid} that you may see (yet).`, tone: 'dim' }]])
      this.#phases?.setRows([])
      return
    }
    const cur = currentPhase(r)
    const o = outcome(r.counts, r.total)
    const lines: Array<Span[]> = [
      [{ text: r.id, tone: 'bold' }, { text: `  ${release(r)}` }, { text: `  ${r.release.platform}, risk ${r.release.risk}`, tone: 'dim' }, { text: `  → ${r.target.tenant || 'the organisation'}` }],
      [{ text: 'state ' }, ...stateSpan(r.state), { text: `   phase ${cur.name} (${cur.index + 1}/${r.phases.length})   ${r.total} endpoints` }, { text: r.deadline ? `   deadline ${minute(r.deadline)}` : '', tone: 'warn' }],
      [...progressBar(r.counts, r.total, Math.max(10, Math.min(40, this.#width - 50))), { text: `  installed ${o.installed}  ` }, { text: `failed ${o.failed}`, tone: o.failed > 0 ? 'bad' : undefined }, { text: `  in flight ${o.running}  waiting ${o.waiting}` }],
      r.halted
        ? [{ text: `halted in phase ${r.halted.name}: ${r.halted.errors} of ${r.halted.size} failed (${pct(r.halted.errorRate, 1)} ≥ ${pct(r.halted.threshold, 1)})`, tone: 'bad' }]
        : [{ text: r.reason ?? nextStep(r), tone: stateTone(r.state) === 'bad' ? 'bad' : 'dim' }],
      [{ text: `created ${minute(r.createdAt)}  updated ${minute(r.updatedAt)}  revision ${r.revision}`, tone: 'dim' }]
    ]
    this.#head?.setLines(lines)
    this.#phases?.setRows(r.phases.map((phase, index) => ({ index, phase, current: index === cur.index })))
  }

  unmount (): void {
    this.#feeds.stop()
  }
}

/** What an active rollout waits for, in words. */
function nextStep (r: RolloutSummary): string {
  if (r.state !== 'running') return ''
  const cur = currentPhase(r)
  const p = r.phases[cur.index]
  if (!p) return ''
  const installed = (p.counts.installed ?? 0) / Math.max(1, p.size)
  const next = r.phases[cur.index + 1]
  if (!next) return `last phase: ${pct(installed)} installed`
  return installed >= p.successThreshold
    ? `${p.name} met its ${pct(p.successThreshold)}; ${next.name} starts after ${minutes(p.minSoakMinutes)} of soak`
    : `${next.name} starts when ${p.name} reaches ${pct(p.successThreshold)} installed (now ${pct(installed)})`
}

function changeText (c: RolloutHistoryEntry['change']): string {
  switch (c.type) {
    case 'created': return `created with ${c.endpoints} endpoints`
    case 'paused': return 'paused'
    case 'resumed': return `resumed from ${c.from}`
    case 'aborted': return 'aborted'
    case 'rolled-back': return `rolled back (${c.endpoints} endpoints told)`
    case 'phase-started': return `phase ${c.name} started`
    case 'phase-succeeded': return `phase ${c.name} succeeded (${c.installed}/${c.size})`
    case 'rollout-halted': return `halted in ${c.name}: ${c.errors}/${c.size} failed (${pct(c.errorRate, 1)} ≥ ${pct(c.threshold, 1)})`
    case 'rollout-completed': return 'completed'
    default: return (c as { type: string }).type
  }
}

