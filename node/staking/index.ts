/**
 * node/staking: a worker's registration (stake from its own balance, bind its libp2p peer id)
 * and the gateway's admission of adverts (only staked workers whose peer key signed their binding
 * enter the view).
 */
export { stakeAndBind, ensureStake, registerGateway, publishedGatewayInfo, publishedGateways, peerIdHash, peerIdBytes, type Registration, type StakeAndBindOptions } from './register.ts'
export { stakingAdmission, ADMISSION_DEFAULTS, type StakingAdmission, type StakingAdmissionInit, type StakingAdmissionComponents } from './admission.ts'
export { signPeerBinding, verifyPeerBinding } from './peer-binding.ts'
