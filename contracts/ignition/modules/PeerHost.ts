/**
 * Ignition module: deploys FunctionRegistry, WorkerStaking, Settlement and ExecutionCoordinator and
 * wires them (the two slashers, Settlement's coordinator). Defaults are the Polygon values of
 * `contracts/deploy.ts#NETWORK_PARAMS`; override any with `--parameters <file.json>`:
 *
 *   npx hardhat --config contracts/hardhat.config.ts ignition deploy contracts/ignition/modules/PeerHost.ts --network amoy
 *
 * See docs/contracts.md.
 */
import { buildModule } from '@nomicfoundation/hardhat-ignition/modules'
import { NETWORK_PARAMS as P } from '../../deploy.ts'

export default buildModule('PeerHost', (m) => {
  const treasury = m.getParameter('treasury', m.getAccount(0))
  const registry = m.contract('FunctionRegistry')
  const staking = m.contract('WorkerStaking', [
    m.getParameter('minWorkerStake', P.minWorkerStake),
    m.getParameter('minGatewayStake', P.minGatewayStake),
    m.getParameter('unbondingPeriod', P.unbondingPeriod)
  ])
  const settlement = m.contract('Settlement', [registry, staking, {
    epochLength: m.getParameter('epochLength', P.epochLength),
    commitWindow: m.getParameter('commitWindow', P.commitWindow),
    challengeWindow: m.getParameter('challengeWindow', P.challengeWindow),
    minBatchBond: m.getParameter('minBatchBond', P.minBatchBond),
    slashBps: m.getParameter('slashBps', P.slashBps),
    challengerShareBps: m.getParameter('challengerShareBps', P.challengerShareBps),
    disagreementQuorum: m.getParameter('disagreementQuorum', P.disagreementQuorum),
    treasury
  }])
  const coordinator = m.contract('ExecutionCoordinator', [
    registry, staking, settlement,
    m.getParameter('penaltyBps', P.penaltyBps),
    m.getParameter('keeperShareBps', P.keeperShareBps),
    treasury
  ])
  m.call(staking, 'setSlashers', [settlement, coordinator])
  m.call(settlement, 'setCoordinator', [coordinator])
  return { registry, staking, settlement, coordinator }
})
