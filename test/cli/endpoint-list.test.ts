// `endpoint list` over the admin socket pages through a large fleet: full endpoint records of
// thousands of endpoints would not fit the socket's 8 MiB frame in one answer.
import t from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { RpcServer } from '../../lib/console/rpc.js'
import { dispatcher, MAX_LIST_PAGE } from '../../lib/console/api.js'
import { LIST_PAGE } from '../../bin/commands/admin.js'
import { world, A, MSP } from '../console/helpers.js'
import { cli } from './helpers.js'

t.test('endpoints.list pages in path order, after the actor\'s scope is applied', async (t) => {
  const w = await world(t, { perGroup: 3 })
  const all = await w.api.endpoints.list('mia', { under: MSP })
  t.equal(all.length, 9)
  const pages: string[][] = []
  for (let after: string | undefined; ;) {
    const page = await w.api.endpoints.list('mia', { under: MSP, limit: 4, ...(after ? { after } : {}) })
    pages.push(page.map((e) => e.path))
    if (page.length < 4) break
    after = page[page.length - 1]!.path
  }
  t.same(pages.map((p) => p.length), [4, 4, 1])
  t.same(pages.flat(), all.map((e) => e.path).sort(), 'every endpoint once, in path order')
  const alice = await w.api.endpoints.list('alice', { under: '', limit: 100 })
  t.ok(alice.length === 6 && alice.every((e) => e.tenant.startsWith(A)), 'a page holds only what the actor may read')
  for (const limit of [0, MAX_LIST_PAGE + 1, 1.5, '3']) {
    await t.rejects(w.api.endpoints.list('mia', { limit: limit as number }), { code: 'BAD_ARGUMENT' }, `limit ${String(limit)} refused`)
  }
  await t.rejects(w.api.endpoints.list('mia', { after: 7 as unknown as string }), { code: 'BAD_ARGUMENT' })
  t.equal(LIST_PAGE, MAX_LIST_PAGE, 'the CLI asks for the pages the console answers')
})

t.test('endpoint list over the socket: more endpoints than one page', async (t) => {
  const perGroup = Math.ceil((LIST_PAGE + 1) / 3)
  const w = await world(t, { perGroup })
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-list-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const socket = path.join(dir, 'console.sock')
  const server = new RpcServer(socket, dispatcher(w.api))
  await server.listen()
  t.teardown(() => server.close())
  const r = await cli(dir, ['endpoint', 'list', '--socket', socket, '--as', 'mia', '--json'])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.json.length, perGroup * 3, 'every endpoint, over two pages')
  t.equal(new Set(r.json.map((e: { keyid: string }) => e.keyid)).size, perGroup * 3, 'none twice')
})
