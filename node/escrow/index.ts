/** node/escrow: a project's Settlement escrow (deposits, gateway allowances) and whether a gateway can charge it. */
export { escrowStatus, escrowCanPay, depositEscrow, allowGateway, fundOnLocalChain, type EscrowStatus } from './escrow.ts'
