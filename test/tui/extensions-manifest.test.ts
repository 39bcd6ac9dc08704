// Manifests are refused before any code loads, and every refusal names the file and the field.
import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { loadManifest, parseManifest } from '../../tui/extensions/manifest.js'
import { evaluateWhen, parseWhen } from '../../tui/extensions/when.js'

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures/extensions')
const VERSION = '0.1.0'

function manifest (change: (m: Record<string, any>) => void = () => {}): Record<string, any> {
  const m: Record<string, any> = {
    name: 'sample',
    publisher: 'acme',
    version: '1.0.0',
    engines: { patchswarm: '^0.1.0' },
    main: 'dist/main.js',
    activationEvents: ['onStartup'],
    contributes: {
      commands: [{ command: 'sample.run', title: 'Run' }],
      views: [{ id: 'sample.view', name: 'Sample' }],
      configuration: { properties: { 'sample.x': { type: 'integer', default: 1 } } }
    }
  }
  change(m)
  return m
}

t.test('a good manifest parses, with defaults filled in and keys normalized', async (t) => {
  const p = parseManifest(manifest((m) => { m.contributes.keybindings = [{ command: 'sample.run', key: 'Shift+Ctrl+R', when: 'view == sample.view' }] }), 'x/package.json', VERSION)
  t.equal(p.id, 'acme.sample')
  t.same(p.manifest.contributes.exporters, [])
  t.equal(p.manifest.contributes.commands[0]!.dangerous, false)
  t.equal(p.keybindings[0]!.key, 'ctrl+r', 'in the key table\'s spelling')
  t.same([...p.settings.keys()], ['sample.x'])
  t.same(parseManifest({ name: 'bare', publisher: 'acme', version: '0.0.1', engines: { patchswarm: '*' }, main: 'm.mjs' }, 'x', VERSION).manifest.activationEvents, [], 'activation events and contributions are optional')
})

const refused: Array<[string, (m: Record<string, any>) => void, RegExp]> = [
  ['no publisher', (m) => { delete m.publisher }, /^BAD_CONFIG: x\/package\.json: publisher: /],
  ['an uppercase name', (m) => { m.name = 'Sample' }, /: name: lowercase letters/],
  ['a version that is not semver', (m) => { m.version = 'one' }, /: version: not a semver version/],
  ['no engines', (m) => { delete m.engines }, /: engines: /],
  ['an engine range that is not a range', (m) => { m.engines.patchswarm = 'banana' }, /: engines\.patchswarm: not a semver range/],
  ['an engine range without this version', (m) => { m.engines.patchswarm = '^2.0.0' }, /: engines\.patchswarm: "\^2\.0\.0" does not include patchswarm 0\.1\.0/],
  ['main going up', (m) => { m.main = 'lib/../../other/main.js' }, /: main: must be a path inside the extension folder \(no "\.\."\)/],
  ['an absolute main', (m) => { m.main = '/usr/lib/main.js' }, /: main: must be a path inside the extension folder, not absolute/],
  ['main in another language', (m) => { m.main = 'main.py' }, /: main: must end in \.js/],
  ['an unknown activation event', (m) => { m.activationEvents = ['onStartup', 'onSomething'] }, /: activationEvents\[1\]: onStartup, onCommand/],
  ['onView of a view not contributed', (m) => { m.activationEvents = ['onView:other'] }, /: activationEvents\[0\]: other is not in contributes\.views/],
  ['a command without a title', (m) => { delete m.contributes.commands[0].title }, /: contributes\.commands\[0\]\.title: /],
  ['a command id with a space', (m) => { m.contributes.commands[0].command = 'sample run' }, /: contributes\.commands\[0\]\.command: letters, digits/],
  ['a command contributed twice', (m) => { m.contributes.commands.push({ command: 'sample.run', title: 'Again' }) }, /: contributes\.commands\[1\]\.command: "sample\.run" appears twice/],
  ['an unknown contribution point', (m) => { m.contributes.menus = [] }, /: contributes\.menus: not a known field/],
  ['a tmux prefix as a key', (m) => { m.contributes.keybindings = [{ command: 'sample.run', key: 'ctrl+b' }] }, /: contributes\.keybindings\[0\]\.key: ctrl\+b is kept free for tmux/],
  ['an unknown key', (m) => { m.contributes.keybindings = [{ command: 'sample.run', key: 'hyper+x' }] }, /: contributes\.keybindings\[0\]\.key: "hyper\+x": unknown key/],
  ['a broken when clause', (m) => { m.contributes.keybindings = [{ command: 'sample.run', key: 'x', when: 'view == ' }] }, /: contributes\.keybindings\[0\]\.when: expected a value after ==/],
  ['a view when clause with an unclosed paren', (m) => { m.contributes.views[0].when = '(a && b' }, /: contributes\.views\[0\]\.when: missing \)/],
  ['an exporter file extension without a dot', (m) => { m.contributes.exporters = [{ id: 'sample.csv', title: 'CSV', fileExtension: 'csv' }] }, /: contributes\.exporters\[0\]\.fileExtension: a dot/],
  ['a setting named without a section', (m) => { m.contributes.configuration.properties = { x: { type: 'string' } } }, /: contributes\.configuration\.properties\.x: a setting is named section\.key/],
  ['a setting of an unknown type', (m) => { m.contributes.configuration.properties['sample.x'].type = 'strang' }, /: contributes\.configuration\.properties\["sample\.x"\]\.type: /],
  ['a misspelt JSON Schema keyword', (m) => { m.contributes.configuration.properties['sample.x'].minimun = 1 }, /: contributes\.configuration\.properties\["sample\.x"\]\.minimun: not a known field/],
  ['a pattern that is no regular expression', (m) => { m.contributes.configuration.properties['sample.x'] = { type: 'string', pattern: '(' } }, /properties\["sample\.x"\]\.pattern: not a valid regular expression/],
  ['a default outside its own schema', (m) => { m.contributes.configuration.properties['sample.x'] = { type: 'integer', minimum: 5, default: 1 } }, /: contributes\.configuration\.properties\["sample\.x"\]\.default: Too small/]
]

for (const [what, change, message] of refused) {
  t.test(`refused: ${what}`, async (t) => {
    t.throws(() => parseManifest(manifest(change), 'x/package.json', VERSION), { code: 'BAD_CONFIG', message })
  })
}

t.test('all problems of a manifest are named in one message', async (t) => {
  const err = await loadManifest(path.join(FIXTURES, 'bad-fields'), VERSION).catch((e) => e)
  t.equal(err.code, 'BAD_CONFIG')
  t.match(err.message, `${path.join(FIXTURES, 'bad-fields', 'package.json')}: `)
  for (const field of ['activationEvents[1]: ', 'contributes.commands[0].title: ']) t.ok(err.message.includes(field), `names ${field}`)
  // The key is checked once the schema passes; a manifest refused by the schema is not checked further.
  const keyOnly = JSON.parse(await fs.readFile(path.join(FIXTURES, 'bad-fields', 'package.json'), 'utf8'))
  keyOnly.activationEvents = ['onStartup']
  keyOnly.contributes.commands[0].title = 'Run'
  t.throws(() => parseManifest(keyOnly, 'k', VERSION), { message: /^BAD_CONFIG: k: contributes\.keybindings\[0\]\.key: ctrl\+b is kept free for tmux/ })
})

t.test('main must exist inside the folder, also through symlinks', async (t) => {
  const dir = t.testdir({ outside: { 'main.mjs': 'export function activate () {}' } })
  const write = async (name: string, main: string, extra?: () => Promise<void>) => {
    await fs.mkdir(path.join(dir, name), { recursive: true })
    await fs.writeFile(path.join(dir, name, 'package.json'), JSON.stringify({ name, publisher: 'acme', version: '1.0.0', engines: { patchswarm: '*' }, main }))
    await extra?.()
    return path.join(dir, name)
  }
  await t.rejects(loadManifest(await write('missing', 'main.mjs'), VERSION), { code: 'BAD_CONFIG', message: /missing\/package\.json: main: "main\.mjs" does not exist/ })
  const linked = await write('linked', 'main.mjs', () => fs.symlink(path.join(dir, 'outside', 'main.mjs'), path.join(dir, 'linked', 'main.mjs')))
  await t.rejects(loadManifest(linked, VERSION), { code: 'BAD_CONFIG', message: /linked\/package\.json: main: "main\.mjs" leads out of the extension folder/ })
  await t.rejects(loadManifest(await write('folder', 'lib.js', () => fs.mkdir(path.join(dir, 'folder', 'lib.js'))), VERSION), { message: /main: "lib\.js" is not a file/ })
  await t.rejects(loadManifest(path.join(dir, 'nothing-here'), VERSION), { code: 'BAD_CONFIG', message: /nothing-here\/package\.json: missing/ })
  await fs.mkdir(path.join(dir, 'notjson'))
  await fs.writeFile(path.join(dir, 'notjson', 'package.json'), '{ "name": ')
  await t.rejects(loadManifest(path.join(dir, 'notjson'), VERSION), { code: 'BAD_CONFIG', message: /notjson\/package\.json: not JSON/ })
  const ok = await loadManifest(path.join(FIXTURES, 'throws'), VERSION)
  t.equal(ok.mainPath, path.join(await fs.realpath(FIXTURES), 'throws', 'lib', 'main.mjs'))
})

t.test('when clauses', async (t) => {
  const ctx = { view: 'rollouts', readonly: false, scope: 'msp-1/acme' }
  const check = (src: string, expected: boolean) => t.equal(evaluateWhen(parseWhen(src), ctx), expected, src)
  check('view == rollouts', true)
  check('view != rollouts', false)
  check("view == 'rollouts' && !readonly", true)
  check('readonly || view == endpoints', false)
  check('!(readonly || view == endpoints) && scope == msp-1/acme', true)
  check('selection', false)
  check('selection != x', true)
  check("scope != ''", true)
  t.throws(() => parseWhen('view ='), /unexpected "="/)
  t.throws(() => parseWhen('a && && b'), /expected a context key/)
  t.throws(() => parseWhen('a b'), /unexpected "b"/)
  t.throws(() => parseWhen(''), /unexpected end/)
})
