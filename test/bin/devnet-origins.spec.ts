/** The devnet's origin form of a function URL (issue 13): `<wallet>.localhost`, as its gateway's `--domain localhost` serves it. */
import assert from 'node:assert/strict'
import { routeOf } from '#node'
import { DEVNET_WALLET_DOMAIN, walletOrigin, walletOriginLines } from '../../bin/devnet-origins.ts'

describe('devnet origins', () => {
  const wallet = '0xAbCdEf0123456789aBcDeF0123456789AbCdEf01'

  it('turns the path form into the wallet origin, lower-cased, keeping port, rest and query', () => {
    assert.equal(walletOrigin(`http://127.0.0.1:8080/${wallet}/hello/hello`), `http://${wallet.toLowerCase()}.localhost:8080/hello/hello`)
    assert.equal(walletOrigin(`http://127.0.0.1:8080/${wallet}/hello/api/items?x=1`), `http://${wallet.toLowerCase()}.localhost:8080/hello/api/items?x=1`)
    assert.equal(walletOrigin('http://127.0.0.1:8080/not-a-wallet/hello/hello'), undefined)
    assert.equal(walletOrigin(`http://127.0.0.1:8080/${wallet}/hello`), undefined)
    assert.equal(walletOrigin('nonsense'), undefined)
  })

  it('gives URLs the gateway routes to the same function as the path form', () => {
    const origin = new URL(walletOrigin(`http://127.0.0.1:8080/${wallet}/hello/hello`)!)
    assert.deepEqual(routeOf(origin.host, origin.pathname, DEVNET_WALLET_DOMAIN), { wallet: wallet.toLowerCase(), project: 'hello', fn: 'hello' })
  })

  it('prints a section only when there are functions', () => {
    assert.deepEqual(walletOriginLines([]), [])
    const lines = walletOriginLines([`http://127.0.0.1:8080/${wallet}/hello/hello`])
    assert.match(lines.join('\n'), /--domain localhost/)
    assert.ok(lines.includes(`  http://${wallet.toLowerCase()}.localhost:8080/hello/hello`))
  })
})
