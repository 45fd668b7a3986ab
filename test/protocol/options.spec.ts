/**
 * The one FunctionOptions schema (protocol/options.ts): the same bounds in every scope, `verify`
 * ("single" or a bounded quorum of a deterministic function), and the comparison a worker uses to
 * refuse a frame whose options differ from its manifest.
 */
import assert from 'node:assert/strict'
import {
  FUNCTION_OPTION_BOUNDS, functionOptionsProblems, optionDifferences, parseFunctionOptions, ProtocolError, quorumOf, quorumProblem, sameFunctionOptions, type FunctionOptions
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

  it('accepts maxFee as a native-currency amount string in the config scope only', () => {
    for (const maxFee of ['0', '1', '0.0001', '12.000000000000000001']) assert.deepEqual(functionOptionsProblems({ maxFee }, 'f', 'config'), [], maxFee)
    for (const maxFee of [0.1, '-1', '1e-3', '.5', '0.0000000000000000001', '01', 'abc', '']) {
      const problems = functionOptionsProblems({ maxFee }, 'functions.a', 'config')
      assert.deepEqual(problems.map(p => p.path), ['functions.a.maxFee'], String(maxFee))
      assert.match(problems[0].message, /"0\.0001"/)
    }
    // never on the wire: a job's options cannot carry a price cap
    assert.deepEqual(functionOptionsProblems({ ...OK, maxFee: '1' }, 'options', 'strict').map(p => p.path), ['options."maxFee"'])
  })

  it('accepts verify "single" or { quorum: n } within bounds, and refuses quorum without deterministic', () => {
    assert.deepEqual(functionOptionsProblems({ verify: 'single' }, 'functions.a', 'config'), [])
    for (const quorum of [FUNCTION_OPTION_BOUNDS.quorum.min, 3, FUNCTION_OPTION_BOUNDS.quorum.max]) {
      assert.deepEqual(functionOptionsProblems({ deterministic: true, verify: { quorum } }, 'functions.a', 'config'), [], String(quorum))
      assert.equal(quorumOf({ quorum }), quorum)
    }
    assert.equal(quorumOf('single'), undefined)
    for (const quorum of [1, 16, 2.5, '3', null]) {
      const [p] = functionOptionsProblems({ verify: { quorum } }, 'functions.a', 'config')
      assert.equal(p.path, 'functions.a.verify.quorum', String(quorum))
      assert.match(p.message, /from 2 to 15/)
    }
    for (const verify of ['quorum', { n: 3 }, { quorum: 3, of: 5 }, 3]) {
      assert.deepEqual(functionOptionsProblems({ verify }, 'functions.a', 'config').map(p => p.path), ['functions.a.verify'], JSON.stringify(verify))
    }
    // never on the wire: a job's options do not carry it
    assert.deepEqual(functionOptionsProblems({ ...OK, verify: { quorum: 3 } }, 'options', 'strict').map(p => p.path), ['options."verify"'])
    // the cross-field rule, on the entry merged with defaults
    assert.equal(quorumProblem({ verify: { quorum: 3 }, deterministic: true }, 'functions.a'), undefined)
    assert.equal(quorumProblem({ verify: 'single' }, 'functions.a'), undefined)
    const q = quorumProblem({ verify: { quorum: 3 } }, 'functions.a')
    assert.equal(q?.path, 'functions.a.verify')
    assert.match(q?.message ?? '', /needs "deterministic": true/)
  })

  it('checks auth values', () => {
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
