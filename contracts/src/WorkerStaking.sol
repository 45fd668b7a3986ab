// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IWorkerStaking} from "./interfaces/IWorkerStaking.sol";

/// @title WorkerStaking
/// @notice See {IWorkerStaking}. No admin after deployment: the deployer sets the two slashers once.
contract WorkerStaking is IWorkerStaking, EIP712, Nonces, ReentrancyGuardTransient {
    uint8 public constant ROLE_WORKER = 1;
    uint8 public constant ROLE_GATEWAY = 2;
    bytes32 public constant PEER_BINDING_TYPEHASH =
        keccak256("PeerBinding(address account,bytes peerId,uint256 nonce,uint256 deadline)");
    uint256 private constant MAX_PEER_ID_LENGTH = 128;
    uint256 private constant MAX_ENDPOINT_LENGTH = 256;
    uint256 private constant MAX_KEY_LENGTH = 128;
    uint256 private constant ED25519_SIGNATURE_LENGTH = 64;

    uint256 public immutable minWorkerStake;
    uint256 public immutable minGatewayStake;
    uint64 public immutable unbondingPeriod;
    address private immutable _initializer;

    address public settlement;
    address public coordinator;

    mapping(address account => StakeInfo) private _stakes;
    struct PeerBinding {
        bytes peerId;
        bytes peerSig;
    }

    /// @dev Per account, never per peer id: a binding by one account can never block another's.
    mapping(address account => PeerBinding) private _peers;

    constructor(uint256 minWorkerStake_, uint256 minGatewayStake_, uint64 unbondingPeriod_) EIP712("PeerHost", "1") {
        minWorkerStake = minWorkerStake_;
        minGatewayStake = minGatewayStake_;
        unbondingPeriod = unbondingPeriod_;
        _initializer = msg.sender;
    }

    /// @notice Sets the only two contracts allowed to slash; callable once, by the deployer.
    function setSlashers(address settlement_, address coordinator_) external {
        if (msg.sender != _initializer) revert StakingUnauthorizedInitializer(msg.sender);
        if (settlement != address(0)) revert StakingSlashersAlreadySet();
        if (settlement_ == address(0) || coordinator_ == address(0)) revert StakingInvalidSlasher();
        settlement = settlement_;
        coordinator = coordinator_;
        emit SlashersSet(settlement_, coordinator_);
    }

    /// @inheritdoc IWorkerStaking
    function stake(uint8 role) external payable {
        if (role != ROLE_WORKER && role != ROLE_GATEWAY) revert StakingInvalidRole(role);
        if (msg.value == 0) revert StakingZeroAmount();
        StakeInfo storage s = _stakes[msg.sender];
        if (s.role == 0) s.role = role;
        else if (s.role != role) revert StakingRoleMismatch(s.role, role);
        uint256 total = uint256(s.amount) + msg.value;
        uint256 minimum = _minimum(role);
        if (total < minimum) revert StakingBelowMinimum(total, minimum);
        s.amount = SafeCast.toUint128(total);
        emit Staked(msg.sender, role, msg.value, total);
    }

    /// @inheritdoc IWorkerStaking
    function requestWithdrawal(uint256 amount) external {
        StakeInfo storage s = _stakes[msg.sender];
        if (amount == 0) revert StakingZeroAmount();
        if (amount > s.amount) revert StakingInsufficientStake(amount, s.amount);
        uint256 remaining = s.amount - amount;
        uint256 minimum = _minimum(s.role);
        if (remaining != 0 && remaining < minimum) revert StakingBelowMinimum(remaining, minimum);
        s.amount = uint128(remaining);
        s.pending += uint128(amount);
        uint64 unlockAt = uint64(block.timestamp) + unbondingPeriod;
        s.unlockAt = unlockAt;
        emit WithdrawalRequested(msg.sender, amount, unlockAt);
    }

    /// @inheritdoc IWorkerStaking
    function withdraw() external nonReentrant {
        StakeInfo storage s = _stakes[msg.sender];
        uint256 amount = s.pending;
        if (amount == 0) revert StakingNothingPending();
        if (block.timestamp < s.unlockAt) revert StakingStillUnbonding(s.unlockAt);
        s.pending = 0;
        emit Withdrawn(msg.sender, amount);
        _send(msg.sender, amount);
    }

    /// @inheritdoc IWorkerStaking
    function bindPeer(address account, bytes calldata peerId, uint256 deadline, bytes calldata signature, bytes calldata peerSig)
        external
    {
        if (block.timestamp > deadline) revert StakingSignatureExpired(deadline);
        if (peerId.length == 0 || peerId.length > MAX_PEER_ID_LENGTH) revert StakingInvalidPeerId();
        if (peerSig.length != ED25519_SIGNATURE_LENGTH) revert StakingInvalidPeerSignature();
        StakeInfo storage s = _stakes[account];
        if (s.role == 0) revert StakingNotStaked(account);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(PEER_BINDING_TYPEHASH, account, keccak256(peerId), nonces(account), deadline))
        );
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != account) revert StakingInvalidSignature(account);
        _useNonce(account);
        bytes32 peerIdHash = keccak256(peerId);
        s.peerIdHash = peerIdHash;
        _peers[account] = PeerBinding({peerId: peerId, peerSig: peerSig});
        emit PeerBound(account, peerIdHash, peerId, peerSig);
    }

    /// @inheritdoc IWorkerStaking
    function setGatewayInfo(string calldata endpoint, bytes calldata encryptionKey) external {
        if (_stakes[msg.sender].role != ROLE_GATEWAY) revert StakingNotGateway(msg.sender);
        uint256 e = bytes(endpoint).length;
        if (e == 0 || e > MAX_ENDPOINT_LENGTH || encryptionKey.length == 0 || encryptionKey.length > MAX_KEY_LENGTH) {
            revert StakingInvalidGatewayInfo();
        }
        emit GatewayInfoSet(msg.sender, endpoint, encryptionKey);
    }

    /// @inheritdoc IWorkerStaking
    function slash(address account, uint256 bps) external nonReentrant returns (uint256 amount) {
        if (msg.sender != settlement && msg.sender != coordinator) revert StakingUnauthorizedSlasher(msg.sender);
        if (bps > 10_000) revert StakingInvalidSlashBps(bps);
        StakeInfo storage s = _stakes[account];
        uint256 active = s.amount;
        uint256 pending = s.pending;
        amount = (active + pending) * bps / 10_000;
        if (amount == 0) return 0;
        uint256 fromActive = amount < active ? amount : active;
        s.amount = uint128(active - fromActive);
        s.pending = uint128(pending - (amount - fromActive));
        emit Slashed(account, msg.sender, amount);
        _send(msg.sender, amount);
    }

    function stakeOf(address account) external view returns (StakeInfo memory) {
        return _stakes[account];
    }

    function isActiveWorker(address account) external view returns (bool) {
        StakeInfo storage s = _stakes[account];
        return s.role == ROLE_WORKER && s.amount >= minWorkerStake && s.amount != 0;
    }

    function isActiveGateway(address account) external view returns (bool) {
        StakeInfo storage s = _stakes[account];
        return s.role == ROLE_GATEWAY && s.amount >= minGatewayStake && s.amount != 0;
    }

    /// @inheritdoc IWorkerStaking
    function peerOf(address account) external view returns (bytes memory peerId, bytes memory peerSig) {
        PeerBinding storage p = _peers[account];
        return (p.peerId, p.peerSig);
    }

    function isSlasher(address account) external view returns (bool) {
        return account != address(0) && (account == settlement || account == coordinator);
    }

    /// @notice The EIP-712 domain separator (name "PeerHost", version "1", this chain, this contract).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _minimum(uint8 role) private view returns (uint256) {
        return role == ROLE_GATEWAY ? minGatewayStake : minWorkerStake;
    }

    function _send(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert StakingTransferFailed(to, amount);
    }
}
