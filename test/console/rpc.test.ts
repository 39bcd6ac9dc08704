// The admin API's socket transport: calls, coded errors, live subscriptions, the 0600 socket,
// and a client that goes away without leaking subscriptions.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Subject, Observable, firstValueFrom, take, toArray } from 'rxjs'
import { RpcClient, RpcServer } from '../../lib/console/rpc.js'
import { PatchswarmError } from '../../lib/errors.js'

/** Unix socket paths are short (107 bytes): tap's fixture folders are too deep for them. */
async function shortDir (t: Test): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-rpc-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  return dir
}

t.test('calls, errors and subscriptions over a 0600 Unix socket', async (t) => {
  const dir = path.join(await shortDir(t), 'run')
  const socketPath = path.join(dir, 'console.sock')
  const ticks = new Subject<number>()
  let live = 0
  const server = new RpcServer(socketPath, (admin, method, params) => {
    if (method === 'whoami') return Promise.resolve({ admin, params })
    if (method === 'fail') return Promise.reject(PatchswarmError.FORBIDDEN('not yours'))
    if (method === 'ticks$') return new Observable((sub) => { live++; const s = ticks.subscribe(sub); return () => { live--; s.unsubscribe() } })
    throw PatchswarmError.NOT_FOUND(`no method ${method}`)
  })
  await server.listen()
  t.teardown(() => server.close())
  t.equal((await fs.stat(socketPath)).mode & 0o777, 0o600, 'socket is 0600')
  t.equal((await fs.stat(dir)).mode & 0o777, 0o700, 'its folder is 0700')

  const client = await RpcClient.connect(socketPath, 'alice')
  t.teardown(() => client.close())
  t.same(await client.call('whoami', [1, 'x']), { admin: 'alice', params: [1, 'x'] }, 'the session acts as the admin named at hello')
  await t.rejects(client.call('fail', []), { code: 'FORBIDDEN', message: 'FORBIDDEN: not yours' })
  await t.rejects(client.call('nope', []), { code: 'NOT_FOUND' })

  const got = firstValueFrom(client.subscribe('ticks$', []).pipe(take(3), toArray()))
  while (live === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  ticks.next(1); ticks.next(2); ticks.next(3)
  t.same(await got, [1, 2, 3])
  while (live !== 0) await new Promise((resolve) => setTimeout(resolve, 5))
  t.pass('take(3) unsubscribed on the server too')

  // A second client that disconnects mid-subscription frees its subscription.
  const other = await RpcClient.connect(socketPath, 'bob')
  other.subscribe('ticks$', []).subscribe({ error: () => {} })
  while (live === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  await other.close()
  while (live !== 0) await new Promise((resolve) => setTimeout(resolve, 5))
  t.pass('a closed connection drops its subscriptions')
})

t.test('garbage, a missing hello and a giant frame close the connection', async (t) => {
  const socketPath = path.join(await shortDir(t), 'console.sock')
  const server = new RpcServer(socketPath, async () => 'ok')
  await server.listen()
  t.teardown(() => server.close())
  const raw = async (bytes: string | Buffer): Promise<string> => {
    const s = net.connect(socketPath)
    let out = ''
    s.setEncoding('utf8')
    s.on('data', (d) => { out += d })
    s.on('error', () => {})
    s.write(bytes)
    await new Promise((resolve) => s.on('close', resolve))
    return out
  }
  t.match(await raw('{"id":1,"method":"x"}\n'), /PROTOCOL_ERROR/, 'a call before hello')
  t.match(await raw('{"hello":{"admin":"a","version":1}}\nnot json\n'), /PROTOCOL_ERROR/, 'a frame that is not JSON')
  t.match(await raw(Buffer.alloc(9 * 1024 * 1024, 'a')), /MESSAGE_TOO_LARGE/, 'an endless line')
  await t.rejects(RpcClient.connect(path.join(path.dirname(socketPath), 'none.sock'), 'a'), { code: 'UNAVAILABLE' })
  await t.rejects(new RpcServer(path.join(t.testdir(), 'x'.repeat(120), 'c.sock'), async () => 1).listen(), { code: 'BAD_ARGUMENT' }, 'a path too long for a socket')
})
