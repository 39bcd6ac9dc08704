import t from 'tap'
import os from 'node:os'
import fs from 'node:fs/promises'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { collectInventory, listOsPackages, parseDpkg, parseRpm } from '../../agent/inventory.js'

function hasTool (name: string): boolean {
  try {
    execFileSync('/bin/sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

t.test('inventory of this machine', async (t) => {
  const installed = [{ name: 'agent-config', version: '1.2.0' }]
  const inv = await collectInventory({ agentVersion: '0.1.0', installed, commandTimeoutMs: 60_000 })
  t.equal(inv.platform, process.platform)
  t.equal(inv.arch, process.arch)
  t.equal(inv.hostname, os.hostname())
  t.equal(inv.release, os.release())
  t.type(inv.kernel, 'string')
  t.ok(inv.os.length > 0, `os: ${inv.os}`)
  t.ok(inv.cpus.count >= 1)
  t.type(inv.cpus.model, 'string')
  t.ok(inv.memory.totalBytes > 0 && inv.memory.freeBytes > 0 && inv.memory.freeBytes <= inv.memory.totalBytes)
  t.ok(inv.disk, 'the root file system answered statfs')
  t.ok(inv.disk!.totalBytes > 0 && inv.disk!.freeBytes <= inv.disk!.totalBytes)
  t.equal(inv.agentVersion, '0.1.0')
  t.same(inv.packages, installed)
  t.not(inv.packages, installed, 'a copy, not the caller’s array')
  t.ok(!Number.isNaN(Date.parse(inv.collectedAt)))

  if (process.platform === 'linux') {
    const osRelease = await fs.readFile('/etc/os-release', 'utf8').catch(() => '')
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1]
    if (pretty) t.equal(inv.os, pretty)
  }
  if (hasTool('dpkg-query')) {
    t.equal(inv.osPackages?.manager, 'dpkg')
    t.ok(inv.osPackages!.count > 0, `${inv.osPackages!.count} packages`)
    t.equal(inv.osPackages!.items.length, Math.min(inv.osPackages!.count, 5000))
    const dpkg = inv.osPackages!.items.find((p) => p.name === 'dpkg')
    t.ok(dpkg, 'dpkg lists itself')
    t.match(dpkg!.version, /^\d/)
    const names = inv.osPackages!.items.map((p) => `${p.name}\t${p.arch}`)
    t.same(names, [...names].sort(), 'sorted by name')
  } else if (!hasTool('rpm')) {
    t.equal(inv.osPackages, undefined, 'no package manager: no list')
  }
  await t.rejects(collectInventory({} as any), { code: 'BAD_ARGUMENT' })
})

t.test('package list is bounded', { skip: !hasTool('dpkg-query') && 'needs dpkg-query' }, async (t) => {
  const list = await listOsPackages({ max: 3 })
  t.equal(list?.items.length, 3)
  t.ok(list!.count > 3)
  t.equal(list!.truncated, true)
})

t.test('missing, failing or hanging package tools leave the list out', { skip: process.platform === 'win32' && 'sh scripts' }, async (t) => {
  const dir = t.testdir({ empty: {}, failing: {}, hanging: {}, junk: {} })
  t.equal(await listOsPackages({ toolPath: path.join(dir, 'empty') }), undefined, 'no tool on the PATH')

  const tool = async (folder: string, body: string) => {
    for (const name of ['dpkg-query', 'rpm']) await fs.writeFile(path.join(dir, folder, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  }
  await tool('failing', 'echo "install ok installed\tfake\t1.0\tall"\nexit 2')
  t.equal(await listOsPackages({ toolPath: `${path.join(dir, 'failing')}:/bin` }), undefined, 'a failing tool')

  await tool('hanging', 'exec sleep 30')
  const started = Date.now()
  t.equal(await listOsPackages({ toolPath: `${path.join(dir, 'hanging')}:/bin`, timeoutMs: 300 }), undefined, 'a hanging tool')
  t.ok(Date.now() - started < 5000, 'given up at the timeout')

  await tool('junk', 'echo "this is not a package list"')
  t.equal(await listOsPackages({ toolPath: `${path.join(dir, 'junk')}:/bin` }), undefined, 'output without packages')

  const inv = await collectInventory({ agentVersion: '0.1.0', toolPath: path.join(dir, 'empty'), diskPath: path.join(dir, 'no-such-dir') })
  t.equal(inv.osPackages, undefined)
  t.equal(inv.disk, undefined, 'statfs failure leaves the disk out')
  t.same(inv.packages, [])
})

t.test('dpkg and rpm output parsing', async (t) => {
  const dpkg = [
    'install ok installed\tbash\t5.2.15-2+b7\tamd64',
    'deinstall ok config-files\told-thing\t1.0\tamd64',
    'install ok installed\tlibc6\t2.36-9+deb12u4\ti386',
    'garbage line',
    ''
  ].join('\n')
  t.same(parseDpkg(dpkg), [
    { name: 'bash', version: '5.2.15-2+b7', arch: 'amd64' },
    { name: 'libc6', version: '2.36-9+deb12u4', arch: 'i386' }
  ], 'removed packages with leftover config are not installed')
  const rpm = 'bash\t5.1.8-9.el9\tx86_64\nperl-Time-HiRes\t4:1.9764-462.el9\tx86_64\ngpg-pubkey\t8483c65d-5ccc5b19\t(none)\n'
  t.same(parseRpm(rpm), [
    { name: 'bash', version: '5.1.8-9.el9', arch: 'x86_64' },
    { name: 'perl-Time-HiRes', version: '4:1.9764-462.el9', arch: 'x86_64' },
    { name: 'gpg-pubkey', version: '8483c65d-5ccc5b19' }
  ])
})
