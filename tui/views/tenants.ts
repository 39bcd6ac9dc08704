// Tenants: the tree the admin may see (distributor › MSP › customer › groups) with each customer's
// status and every node's compliance, endpoints and SLA breaches, live from reports.tree$.
// Enter opens the node's endpoints; `R` its rollouts; `:tenant msp-1/acme` opens the tree there.
import { gauge, type KeyAction, type Region, type Tree, type View } from '../ui/index.js'
import type { TenantKpis } from '../../lib/console/api.js'
import { Feeds, type AppContext } from './context.js'
import { stateSpan } from './format.js'

interface Node {
  t: TenantKpis
  children: Node[]
}

/** The flat pre-order list of reports.tree$ as a forest. */
export function forest (list: readonly TenantKpis[]): Node[] {
  const byPath = new Map<string, Node>()
  const roots: Node[] = []
  for (const t of list) {
    const node: Node = { t, children: [] }
    byPath.set(t.path, node)
    const parent = byPath.get(t.path.split('/').slice(0, -1).join('/'))
    if (parent) parent.children.push(node)
    else roots.push(node)
  }
  return roots
}

export class TenantsView implements View {
  readonly id = 'tenants'
  readonly keys: readonly KeyAction[]
  readonly #ctx: AppContext
  readonly #feeds: Feeds
  #select: string | undefined
  #tree: Tree<Node> | undefined

  /** `select`: the tenant to put the cursor on once the tree is there. */
  constructor (ctx: AppContext, select?: string) {
    this.#ctx = ctx
    this.#select = select?.replace(/\/+$/, '')
    this.#feeds = new Feeds(ctx, () => this.title)
    this.keys = [
      { action: 'tenant.rollouts', key: 'R', hint: 'rollouts', when: 'selected', command: false, description: 'Rollouts targeting the selected tenant or below', run: () => { const n = this.#tree?.selected; if (n) void ctx.open('rollouts', [n.t.path]) } },
      { action: 'tenant.endpoints', key: 'e', hint: 'endpoints', when: 'selected', command: false, description: 'Endpoints of the selected tenant', run: () => { const n = this.#tree?.selected; if (n) void ctx.open('endpoints', [`${n.t.path}/`]) } }
    ]
  }

  get title (): string { return 'Tenants' }

  mount (region: Region): void {
    this.#tree = region.tree<Node>({
      title: 'Tenants',
      id: (n) => n.t.path,
      label: (n) => [{ text: n.t.name }, { text: n.t.displayName && n.t.displayName !== n.t.name ? `  ${n.t.displayName}` : '', tone: 'dim' }],
      children: (n) => n.children,
      search: (n) => `${n.t.path} ${n.t.displayName} ${n.t.kind} ${n.t.status ?? ''}`,
      expandDepth: 3,
      empty: 'no tenants you may see',
      tone: (n) => n.t.status === 'removed' ? 'dim' : undefined,
      onOpen: (n) => { void this.#ctx.open('endpoints', [`${n.t.path}/`]) },
      columns: [
        { title: 'Kind', width: 9, value: (n) => n.t.kind },
        { title: 'Status', width: 10, value: (n) => n.t.status ?? '', format: (n) => n.t.status ? stateSpan(n.t.status) : '' },
        { title: 'Endp', width: 6, align: 'right', value: (n) => n.t.kpis.endpoints },
        { title: 'Compliance', width: 16, value: (n) => n.t.kpis.compliance ?? -1, format: (n) => gauge(n.t.kpis.compliance, 16, { warnBelow: 0.9, badBelow: 0.7 }) },
        { title: 'SLA!', width: 5, align: 'right', value: (n) => n.t.kpis.slaBreaches }
      ]
    })
    this.#feeds.watch(this.#ctx.data.tree$, (list) => {
      this.#tree!.setRoots(forest(list))
      if (this.#select !== undefined && this.#tree!.select(this.#select)) this.#select = undefined
    })
  }

  unmount (): void {
    this.#feeds.stop()
  }
}
