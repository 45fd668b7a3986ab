// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title PeerHost staking for workers and gateways
/// @notice An account stakes native currency in one role (worker = 1, gateway = 2), binds its libp2p
/// peer id with an EIP-712 signature from the staking address plus the peer key's own Ed25519
/// signature (stored and emitted, verified by nodes: see {bindPeer}), and (gateways) publishes its HTTP
/// endpoint and the public key builders encrypt secrets to. Withdrawal is two-step: a request moves
/// stake to `pending`, claimable after `unbondingPeriod`, which is longer than every challenge
/// window; pending stake stays slashable. Only Settlement and ExecutionCoordinator may slash.
interface IWorkerStaking {
    struct StakeInfo {
        /// Active stake (counts towards the role minimum). In one storage slot with `unlockAt` and
        /// `role`, so {isActiveWorker} (read by every Settlement commit) reads one slot.
        uint128 amount;
        /// When `pending` may be withdrawn.
        uint64 unlockAt;
        /// 1 = worker, 2 = gateway, 0 = never staked.
        uint8 role;
        /// Stake requested for withdrawal; still slashable until withdrawn.
        uint128 pending;
        /// keccak256 of the bound libp2p peer id bytes (zero when unbound).
        bytes32 peerIdHash;
    }

    /// @notice `account` added `amount` to its stake in `role`; `total` is its active stake now.
    event Staked(address indexed account, uint8 indexed role, uint256 amount, uint256 total);
    /// @notice `amount` moved from active to pending stake, withdrawable at `unlockAt`.
    event WithdrawalRequested(address indexed account, uint256 amount, uint64 unlockAt);
    /// @notice Pending stake was paid out.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice `account` bound libp2p `peerId` (raw multihash bytes) to its stake; `peerSig` is the
    /// peer key's Ed25519 signature of the binding message (contracts/abi/peer-binding.ts). The chain
    /// does not verify `peerSig`: a node must, and must ignore a binding whose `peerSig` is invalid.
    event PeerBound(address indexed account, bytes32 indexed peerIdHash, bytes peerId, bytes peerSig);
    /// @notice A gateway published its endpoint and secret-encryption public key.
    event GatewayInfoSet(address indexed gateway, string endpoint, bytes encryptionKey);
    /// @notice `slasher` took `amount` of `account`'s stake (active first, then pending).
    event Slashed(address indexed account, address indexed slasher, uint256 amount);
    /// @notice The two slashers were set (once, at deployment).
    event SlashersSet(address settlement, address coordinator);

    /// @notice Role must be 1 (worker) or 2 (gateway) and cannot change while staked.
    error StakingInvalidRole(uint8 role);
    /// @notice The account is staked in another role.
    error StakingRoleMismatch(uint8 current, uint8 requested);
    /// @notice Zero amount.
    error StakingZeroAmount();
    /// @notice Active stake would be above zero but below the role minimum.
    error StakingBelowMinimum(uint256 amount, uint256 minimum);
    /// @notice More than the active stake was requested.
    error StakingInsufficientStake(uint256 requested, uint256 available);
    /// @notice Nothing pending.
    error StakingNothingPending();
    /// @notice Pending stake is still unbonding.
    error StakingStillUnbonding(uint64 unlockAt);
    /// @notice The account has never staked.
    error StakingNotStaked(address account);
    /// @notice The binding signature is past its deadline.
    error StakingSignatureExpired(uint256 deadline);
    /// @notice The binding signature was not made by `account`.
    error StakingInvalidSignature(address account);
    /// @notice Peer ids are 1–128 bytes.
    error StakingInvalidPeerId();
    /// @notice An Ed25519 signature is 64 bytes.
    error StakingInvalidPeerSignature();
    /// @notice Only gateways publish gateway information.
    error StakingNotGateway(address account);
    /// @notice Endpoint must be 1–256 bytes and the key 1–128 bytes.
    error StakingInvalidGatewayInfo();
    /// @notice The caller may not slash.
    error StakingUnauthorizedSlasher(address caller);
    /// @notice Slash share above 100 %.
    error StakingInvalidSlashBps(uint256 bps);
    /// @notice Slashers are set once, by the deployer, to non-zero addresses.
    error StakingSlashersAlreadySet();
    error StakingUnauthorizedInitializer(address caller);
    error StakingInvalidSlasher();
    /// @notice A payout failed.
    error StakingTransferFailed(address to, uint256 amount);

    /// @notice Adds `msg.value` to the caller's stake in `role` (first stake sets the role).
    function stake(uint8 role) external payable;
    /// @notice Moves `amount` of active stake to pending; restarts the unbonding clock.
    function requestWithdrawal(uint256 amount) external;
    /// @notice Pays out pending stake after the unbonding period.
    function withdraw() external;
    /// @notice Binds `peerId` to `account`. Two signatures:
    /// - `signature`: `account`'s EIP-712 signature over
    ///   `PeerBinding(address account,bytes peerId,uint256 nonce,uint256 deadline)` (domain "PeerHost",
    ///   "1", this chain, this contract): the account consents. Checked here.
    /// - `peerSig`: the peer key's Ed25519 signature over the 96-byte message
    ///   `"peerhost-peer-binding-v1" ‖ uint256(chainid) ‖ address(this) ‖ account` (big-endian, packed;
    ///   contracts/abi/peer-binding.ts `peerBindingMessage`): the peer key's holder consents. Ed25519
    ///   cannot be verified cheaply on chain, so it is only stored and emitted; nodes verify it and
    ///   ignore bindings without a valid one. Only its length (64) is checked here.
    /// A peer id may be bound by several accounts (there is no first-come ownership a squatter could
    /// take); only the binding with a valid `peerSig` means anything. Anyone may submit.
    function bindPeer(address account, bytes calldata peerId, uint256 deadline, bytes calldata signature, bytes calldata peerSig)
        external;
    /// @notice Gateways publish their HTTP endpoint and secret-encryption public key.
    function setGatewayInfo(string calldata endpoint, bytes calldata encryptionKey) external;
    /// @notice Takes `bps`/10,000 of `account`'s active plus pending stake and sends it to the caller.
    /// @return amount the amount taken (zero when nothing is staked).
    function slash(address account, uint256 bps) external returns (uint256 amount);

    function stakeOf(address account) external view returns (StakeInfo memory);
    function isActiveWorker(address account) external view returns (bool);
    function isActiveGateway(address account) external view returns (bool);
    /// @notice The peer id `account` last bound and the peer signature it came with (empty when unbound).
    /// Unverified on chain: check `peerSig` before trusting the binding.
    function peerOf(address account) external view returns (bytes memory peerId, bytes memory peerSig);
    function unbondingPeriod() external view returns (uint64);
    function minWorkerStake() external view returns (uint256);
    function minGatewayStake() external view returns (uint256);
    function isSlasher(address account) external view returns (bool);
}
