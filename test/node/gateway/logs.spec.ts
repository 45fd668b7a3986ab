/** The gateway's per-project log book: ordering, `after`, and its bounds. */
import assert from 'node:assert/strict'
import { logBook } from '#node'

const W = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'
const entry = (logs: string, fn = 'f'): any => ({ at: new Date().toISOString(), function: fn, jobId: '0x', status: 200, ms: 1, logs, logsTruncated: false })

describe('gateway log book', () => {
  it('keeps entries per project in order and answers those after a sequence number', () => {
    const book = logBook()
    book.record(W, 'a', entry('one'))
    book.record(W.toLowerCase(), 'a', entry('two'))
    book.record(W, 'b', entry('other project'))
    const all = book.after(W, 'a', 0)
    assert.deepEqual(all.map(e => e.logs), ['one', 'two'])
    assert.deepEqual(book.after(W, 'a', all[0].seq).map(e => e.logs), ['two'])
    assert.deepEqual(book.after(W, 'nope', 0), [])
  })

  it('drops the oldest entries past the entry and byte bounds, and the least recent projects', () => {
    const book = logBook({ entries: 3, bytes: 10, projects: 2 })
    for (const l of ['aaaa', 'bbbb', 'cccc', 'dddd']) book.record(W, 'p', entry(l))
    assert.deepEqual(book.after(W, 'p', 0).map(e => e.logs), ['cccc', 'dddd'], '10 bytes hold two 4-byte entries')
    book.record(W, 'q', entry('x'.repeat(25)))
    const q = book.after(W, 'q', 0)
    assert.equal(q[0].logs.length, 10)
    assert.equal(q[0].logsTruncated, true)
    book.record(W, 'r', entry('r'))
    assert.deepEqual(book.after(W, 'p', 0), [], 'the least recently written project went first')
    assert.equal(book.after(W, 'r', 0).length, 1)
  })
})
