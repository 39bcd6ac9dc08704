import t from 'tap'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { openDatabase, sublevel } from '../../lib/store/db.js'

t.test('open, sublevel, reopen', async (t) => {
  const dir = path.join(t.testdir(), 'db')
  const db = await openDatabase(dir)
  await sublevel(db, 'x').put('k', { n: 1 })
  await db.close()
  const again = await openDatabase(dir)
  t.same(await sublevel(again, 'x').get('k'), { n: 1 })
  await again.close()
})

t.test('a second process on the same folder gets IN_USE', async (t) => {
  const dir = path.join(t.testdir(), 'db')
  const db = await openDatabase(dir)
  t.teardown(() => db.close())
  const script = `import { openDatabase } from ${JSON.stringify(path.resolve('lib/store/db.ts'))};
    openDatabase(${JSON.stringify(dir)}).then(() => console.log('opened'), (e) => console.log(e.code))`
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  await once(child, 'exit')
  t.equal(out.trim(), 'IN_USE')
})
