import t from 'tap'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { KeyTable, normalizeKey, keyFromTerminal, displayKey, parseKeymap, loadKeymap, type KeyAction } from '../../tui/ui/keys.js'

const noop = () => {}
const act = (action: string, extra: Partial<KeyAction> = {}): KeyAction => ({ action, description: `does ${action}`, run: noop, ...extra })

t.test('one spelling per key, from VS Code and blessed spellings alike', async (t) => {
  const cases: Array<[string, string]> = [
    ['C-r', 'ctrl+r'], ['Ctrl+R', 'ctrl+r'], ['control-r', 'ctrl+r'],
    ['S-g', 'G'], ['shift+g', 'G'], ['G', 'G'], ['g', 'g'],
    ['M-x', 'alt+x'], ['meta+x', 'alt+x'], ['alt+shift+x', 'alt+X'],
    ['esc', 'escape'], ['Escape', 'escape'], ['return', 'enter'], ['S-tab', 'shift+tab'],
    [' ', 'space'], ['?', '?'], ['/', '/'], ['f5', 'f5'], ['pgdn', 'pagedown'], ['-', '-']
  ]
  for (const [spec, want] of cases) t.equal(normalizeKey(spec), want, spec)
  for (const bad of ['ctrl+nope', 'hyper+x', '', '\x07', 'C-C-x']) t.throws(() => normalizeKey(bad), Error, JSON.stringify(bad))
})

t.test('Ctrl-A and Ctrl-B are refused in every spelling: they are the tmux prefixes', async (t) => {
  for (const spec of ['C-a', 'ctrl+a', 'Ctrl+A', 'ctrl+shift+a', 'C-b', 'control+b']) {
    t.throws(() => normalizeKey(spec), /kept free for tmux/, spec)
  }
  const table = new KeyTable()
  t.throws(() => table.register(act('select.all', { key: 'C-a' })), { code: 'BAD_ARGUMENT', message: /select\.all: key\[0\]: ctrl\+a is kept free for tmux/ })
  t.throws(() => table.register(act('x', { key: ['x', 'ctrl+b'] })), { code: 'BAD_ARGUMENT', message: /key\[1\]/ })
  t.equal(table.list().length, 0, 'nothing half-registered')
})

t.test('terminal key events map to the same spelling', async (t) => {
  t.equal(keyFromTerminal('A', { name: 'a', shift: true }), 'A')
  t.equal(keyFromTerminal('?', {}), '?')
  t.equal(keyFromTerminal('\x12', { name: 'r', ctrl: true }), 'ctrl+r')
  t.equal(keyFromTerminal(undefined, { name: 'tab', shift: true }), 'shift+tab')
  t.equal(keyFromTerminal(undefined, { name: 'x', meta: true }), 'alt+x')
  t.equal(keyFromTerminal('\r', { name: 'return' }), undefined, 'the duplicate return is dropped')
  t.equal(keyFromTerminal('\r', { name: 'enter' }), 'enter')
  t.equal(keyFromTerminal(' ', { name: 'space' }), 'space')
  t.equal(displayKey('ctrl+r'), '^R')
  t.equal(displayKey('escape'), 'esc')
  t.equal(displayKey('shift+tab'), 'S-tab')
})

t.test('lookup honours when, prefers scoped actions, then the newest', async (t) => {
  const table = new KeyTable()
  table.register(act('global.x', { key: 'x' }))
  table.register(act('rollout.abort', { key: 'x', when: 'view == rollouts' }))
  t.equal(table.lookup('x', { view: 'endpoints' })?.action, 'global.x')
  t.equal(table.lookup('x', { view: 'rollouts' })?.action, 'rollout.abort', 'the scoped one wins where it applies')
  table.register(act('global.y', { key: 'x' }))
  t.equal(table.lookup('x', { view: 'endpoints' })?.action, 'global.y', 'the newest of equal rank wins')
  t.equal(table.lookup('z', {}), undefined)
  t.throws(() => table.register(act('bad', { when: 'view ==' })), { code: 'BAD_ARGUMENT', message: /bad: when/ })
  t.throws(() => table.register(act('has space')), { code: 'BAD_ARGUMENT' })
})

t.test('an action registered twice shadows the first until disposed', async (t) => {
  const table = new KeyTable()
  const ran: string[] = []
  table.register(act('open', { key: 'enter', run: () => ran.push('first') }))
  const second = table.register(act('open', { key: 'enter', run: () => ran.push('second') }))
  t.equal(table.list().filter((b) => b.action === 'open').length, 1, 'listed once')
  table.lookup('enter', {})!.run([])
  table.command('open', {})!.binding.run([])
  second.dispose()
  table.lookup('enter', {})!.run([])
  t.same(ran, ['second', 'second', 'first'])
})

t.test('--readonly keeps dangerous actions out of keys, commands, help and hints', async (t) => {
  for (const readonly of [false, true]) {
    const table = new KeyTable({ readonly })
    table.register(act('rollout.abort', { key: 'x', dangerous: true }))
    table.register(act('rollout.pause', { key: 'p' }))
    const names = table.list().map((b) => b.action)
    t.equal(names.includes('rollout.abort'), !readonly, `list, readonly=${readonly}`)
    t.equal(table.lookup('x', {}) !== undefined, !readonly, `key, readonly=${readonly}`)
    t.equal(table.command('rollout.abort', {}) !== undefined, !readonly, `command, readonly=${readonly}`)
    t.equal(table.commandNames({}).includes('rollout.abort'), !readonly, `completion, readonly=${readonly}`)
    t.ok(names.includes('rollout.pause'), 'safe actions stay')
  }
  // A user keymap cannot bring it back.
  const table = new KeyTable({ readonly: true, keymap: parseKeymap({ keys: { 'rollout.abort': 'a' } }) })
  table.register(act('rollout.abort', { key: 'x', dangerous: true }))
  t.equal(table.lookup('a', {}), undefined)
})

t.test('a user keymap replaces the default keys and wins over other bindings', async (t) => {
  const keymap = parseKeymap({ keys: { 'rollout.abort': 'X', help: ['?', 'f1'], 'list.top': [] } })
  const table = new KeyTable({ keymap })
  table.register(act('rollout.abort', { key: 'x', when: 'view == rollouts' }))
  table.register(act('help', { key: '?' }))
  table.register(act('list.top', { key: 'g' }))
  table.register(act('rollout.export', { key: 'X', when: 'view == rollouts' }))
  const ctx = { view: 'rollouts' }
  t.equal(table.lookup('x', ctx), undefined, 'the default key is gone')
  t.equal(table.lookup('X', ctx)?.action, 'rollout.abort', 'the user key wins over a later binding of X')
  t.equal(table.lookup('f1', ctx)?.action, 'help')
  t.equal(table.lookup('g', ctx), undefined, 'an empty list unbinds')
  t.ok(table.list().find((b) => b.action === 'rollout.abort')?.fromUser)
})

t.test('keymap errors are BAD_CONFIG naming the field', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [[], /keymap: \(root\): must be an object/],
    [{ keymap: {} }, /keymap: keymap: not a known field/],
    [{ keys: [] }, /keys: must be an object/],
    [{ keys: { 'rollout.abort': 'C-a' } }, /keys\["rollout\.abort"\]: ctrl\+a is kept free for tmux/],
    [{ keys: { help: ['?', 'ctrl+b'] } }, /keys\["help"\]\[1\]: ctrl\+b is kept free for tmux/],
    [{ keys: { help: ['?', 3] } }, /keys\["help"\]\[1\]: must be a string/],
    [{ keys: { help: 7 } }, /keys\["help"\]: must be a key or a list of keys/],
    [{ keys: { help: 'hyper+q' } }, /keys\["help"\]: .*unknown modifier|keys\["help"\]: .*unknown key/],
    [{ keys: { 'two words': 'x' } }, /keys\["two words"\]: not an action name/]
  ]
  for (const [json, message] of cases) t.throws(() => parseKeymap(json), { code: 'BAD_CONFIG', message }, JSON.stringify(json))
})

t.test('loadKeymap reads a file; a missing optional file is an empty keymap', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ps-keymap-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'keymap.json')
  await writeFile(file, JSON.stringify({ keys: { 'rollout.abort': 'X' } }))
  t.same([...await loadKeymap(file)], [['rollout.abort', ['X']]])
  t.equal((await loadKeymap(path.join(dir, 'none.json'), { optional: true })).size, 0)
  await t.rejects(loadKeymap(path.join(dir, 'none.json')), { code: 'BAD_CONFIG' })
  await writeFile(file, '{ "keys": ')
  await t.rejects(loadKeymap(file), { code: 'BAD_CONFIG', message: new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not JSON`) })
  await writeFile(file, JSON.stringify({ keys: { quit: 'C-b' } }))
  await t.rejects(loadKeymap(file), { code: 'BAD_CONFIG', message: /keymap\.json: keys\["quit"\]/ })
})
