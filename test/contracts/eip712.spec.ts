import assert from 'node:assert/strict'
import { hashDomain, keccak256, toHex, zeroAddress, type Hex } from 'viem'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  RECEIPT_TYPE_STRING, RECEIPT_TYPEHASH, TICKET_TYPE_STRING, TICKET_TYPEHASH, peerHostDomain, receiptDigest, signReceipt, signTicket, ticketDigest, functionId, projectId
} from '../../protocol/eip712.ts'
import { setup, signedJob, type World } from './fixture.ts'

describe('contracts: EIP-712 agrees with protocol/eip712.ts', function () {
  this.timeout(120_000)
  let world: World
  before(async () => { world = await setup() })
  after(async () => { await world.close() })

  it('has the same Ticket and Receipt type hashes as protocol', async () => {
    assert.equal(await world.read.settlement.read.TICKET_TYPEHASH(), TICKET_TYPEHASH)
    assert.equal(await world.read.settlement.read.RECEIPT_TYPEHASH(), RECEIPT_TYPEHASH)
  })

  it('spells the type strings in Settlement.sol exactly as protocol derives them (jobHash after functionId, Receipt = Ticket + outputHash)', () => {
    const src = readFileSync(join(import.meta.dirname, '../../contracts/src/Settlement.sol'), 'utf8')
    assert.ok(src.includes(`"${TICKET_TYPE_STRING}"`), `Settlement.sol lacks ${TICKET_TYPE_STRING}`)
    assert.ok(src.includes(`"${RECEIPT_TYPE_STRING}"`), `Settlement.sol lacks ${RECEIPT_TYPE_STRING}`)
    assert.match(TICKET_TYPE_STRING, /bytes32 functionId,bytes32 jobHash,bytes32 inputHash/)
    assert.match(RECEIPT_TYPE_STRING, /bytes32 inputHash,bytes32 outputHash,.*uint64 epoch,uint64 deadline\)$/)
  })

  it('has the domain separator of peerHostDomain(chainId, Settlement)', async () => {
    const expected = hashDomain({
      domain: { ...world.domain, chainId: BigInt(world.chainId) },
      types: { EIP712Domain: [{ name: 'name', type: 'string' }, { name: 'version', type: 'string' }, { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' }] }
    })
    assert.equal(await world.read.settlement.read.domainSeparator(), expected)
  })

  it('hashes tickets and receipts to the digests protocol computes', async () => {
    const job = await signedJob(world, { worker: 'w1', epoch: 7n })
    assert.equal(await world.read.settlement.read.hashTicket([job.ticket]), ticketDigest(world.domain, job.ticket))
    assert.equal(await world.read.settlement.read.hashReceipt([job.receipt]), receiptDigest(world.domain, job.receipt))
  })

  it('verifies on-chain a ticket and a receipt signed by protocol signTicket/signReceipt with viem accounts', async () => {
    const job = await signedJob(world, { worker: 'w1', epoch: 7n })
    assert.equal(await world.read.settlement.read.verifyTicket([job.ticket, job.ticketSignature, world.actors.gateway.address]), true)
    assert.equal(await world.read.settlement.read.verifyReceipt([job.receipt, job.receiptSignature]), true)
    // and rejects them for anyone else or any changed field
    assert.equal(await world.read.settlement.read.verifyTicket([job.ticket, job.ticketSignature, world.actors.w1.address]), false)
    assert.equal(await world.read.settlement.read.verifyTicket([{ ...job.ticket, fee: job.ticket.fee + 1n }, job.ticketSignature, world.actors.gateway.address]), false)
    assert.equal(await world.read.settlement.read.verifyReceipt([{ ...job.receipt, outputHash: keccak256('0x00') }, job.receiptSignature]), false)
    // the jobHash and the receipt's deadline are signed too: changing the job or its deadline breaks both
    assert.equal(await world.read.settlement.read.verifyTicket([{ ...job.ticket, jobHash: keccak256('0x01') }, job.ticketSignature, world.actors.gateway.address]), false)
    assert.equal(await world.read.settlement.read.verifyReceipt([{ ...job.receipt, jobHash: keccak256('0x01') }, job.receiptSignature]), false)
    assert.equal(await world.read.settlement.read.verifyReceipt([{ ...job.receipt, deadline: job.receipt.deadline + 1n }, job.receiptSignature]), false)
  })

  it('rejects a signature replayed from another chain id or another Settlement deployment', async () => {
    const job = await signedJob(world, { worker: 'w1', epoch: 7n })
    for (const domain of [peerHostDomain(137, world.addresses.Settlement), peerHostDomain(80002, world.addresses.Settlement), peerHostDomain(world.chainId, world.addresses.ExecutionCoordinator), peerHostDomain(world.chainId, zeroAddress)]) {
      const sig: Hex = await signTicket(world.actors.gateway.account, domain, job.ticket)
      assert.equal(await world.read.settlement.read.verifyTicket([job.ticket, sig, world.actors.gateway.address]), false)
      const rsig: Hex = await signReceipt(world.actors.w1.account, domain, job.receipt)
      assert.equal(await world.read.settlement.read.verifyReceipt([job.receipt, rsig]), false)
    }
  })

  it('derives project and function ids as protocol does', async () => {
    const owner = world.actors.owner.address
    assert.equal(await world.read.registry.read.projectOfFunction([functionId(owner, 'demo', 'hello')]), projectId(owner, 'demo'))
    assert.equal(await world.read.registry.read.projectOfFunction([functionId(owner, 'demo', 'echo')]), projectId(owner, 'demo'))
    assert.equal(await world.read.registry.read.projectOfFunction([keccak256(toHex('nope'))]), '0x' + '00'.repeat(32))
  })
})
