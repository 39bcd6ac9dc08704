import t from 'tap'
import { cli } from './helpers.js'

t.test('the delivery demo delivers both releases through the swarm, and runs again on the same folder', async (t) => {
  const dir = t.testdir()
  for (const run of [1, 2]) {
    const r = await cli(dir, ['delivery-demo', '--data', 'demo', '--size-mib', '8', '--endpoints', '3', '--json'])
    t.equal(r.code, 0, r.stderr)
    const s = r.json
    t.equal(s.root_version, 2, `run ${run}: root walked to v2`)
    t.equal(s.endpoints, 3)
    t.ok(s.origin_bytes >= 8 * 1024 * 1024, 'the origin sent at least one copy of 1.0.0')
    t.ok(s.wan_savings > 0.3, `run ${run}: WAN savings ${s.wan_savings}`)
    t.ok(s.update_reused_bytes > s.update_moved_bytes, 'the update reused more than it moved')
  }
})
