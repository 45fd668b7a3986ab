/**
 * The one FunctionOptions schema (protocol/options.ts): the same bounds in every scope, options
 * nobody enforces yet refused with the issue that builds them, and the comparison a worker uses to
 * refuse a frame whose options differ from its manifest.
 */
import assert from 'node:assert/strict'
import {
  FUNCTION_OPTION_BOUNDS, functionOptionsProblems, optionDifferences, parseFunctionOptions, ProtocolError, sameFunctionOptions, type FunctionOptions
} from '#protocol'

const OK: FunctionOptions = { memoryMb: 128, timeoutMs: 5_000, network: ['api.example.com', '*.example.org:8443'], isolation: 'function' }

describe('protocol: FunctionOptions schema', () => {
  it('accepts exactly the four fields within bounds in the strict scope, and copies them', () => {
    const parsed = parseFunctionOptions({ ...OK })
    assert.deepEqual(parsed, OK)
    assert.notEqual(parsed.network, OK.network)
    for (const [field, value] of [['memoryMb', FUNCTION_OPTION_BOUNDS.memoryMb.max + 1], ['memoryMb', FUNCTION_OPTION_BOUNDS.memoryMb.min - 1], ['timeoutMs', 0], ['timeoutMs', 1.5], ['isolation', 'none']] as const) {
      assert.throws(() => parseFunctionOptions({ ...OK, [field]: value }), (err: ProtocolError) => err.code === 'INVALID_FIELD' && err.message.startsWith(`options.${field}: expected`), `${field} = ${value}`)
    }
    assert.throws(() => parseFunctionOptions({ memoryMb: 128, timeoutMs: 5_000, network: [] }), /options\.isolation: expected a value/)
    assert.throws(() => parseFunctionOptions({ ...OK, deterministic: true }), /options\."deterministic": unexpected field/)
    assert.throws(() => parseFunctionOptions({ ...OK, network: ['http://x.example'] }), /options\.network\[0\]/)
    assert.throws(() => parseFunctionOptions(Object.assign(Object.create({ polluted: true }), OK)), /expected a map/)
  })

  it('reports every problem at once in the config scope, where every field is optional', () => {
    assert.deepEqual(functionOptionsProblems({}, 'defaults', 'config'), [])
    assert.deepEqual(functionOptionsProblems({ deterministic: true, verify: 'single', auth: 'public' }, 'f', 'config'), [])
    const problems = functionOptionsProblems({ memoryMb: 4096, timeoutMs: -1, deterministic: 'yes', extra: 1 }, 'functions.a', 'config')
    assert.deepEqual(problems.map(p => p.path).sort(), ['functions.a."extra"', 'functions.a.deterministic', 'functions.a.memoryMb', 'functions.a.timeoutMs'])
    assert.match(problems.find(p => p.path === 'functions.a.memoryMb')!.message, /from 16 to 2048/)
  })

  it('refuses options that are not enforced yet, naming the issue that builds them', () => {
    const [quorum] = functionOptionsProblems({ verify: { quorum: 3 } }, 'functions.a', 'config')
    assert.equal(quorum.path, 'functions.a.verify')
    assert.match(quorum.message, /not built yet \(issue 11/)
    // function auth is built (node/auth): its values pass the schema, a wrong one names the field
    for (const auth of ['public', 'api-key', 'wallet']) assert.deepEqual(functionOptionsProblems({ auth }, 'functions.a', 'config'), [])
    const [bad] = functionOptionsProblems({ auth: 'nobody' }, 'a', 'config')
    assert.equal(bad.path, 'a.auth')
    assert.equal(functionOptionsProblems({ allow: ['0x12'] }, 'a', 'config')[0].path, 'a.allow')
  })

  it('compares option sets the way jobHash does (the allow-list as a set)', () => {
    assert.ok(sameFunctionOptions(OK, { ...OK, network: [...OK.network].reverse() }))
    assert.ok(!sameFunctionOptions(OK, { ...OK, memoryMb: 2048 }))
    assert.ok(!sameFunctionOptions(OK, { ...OK, network: [...OK.network, 'evil.example'] }))
    assert.deepEqual(optionDifferences(OK, { ...OK, memoryMb: 2048, network: ['evil.example'], isolation: 'execution' }), ['memoryMb', 'network', 'isolation'])
    assert.deepEqual(optionDifferences(OK, OK), [])
  })
})
