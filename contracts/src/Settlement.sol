// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";
import {IFunctionRegistry} from "./interfaces/IFunctionRegistry.sol";
import {IWorkerStaking} from "./interfaces/IWorkerStaking.sol";

/// @title Settlement
/// @notice See {ISettlement}. The EIP-712 domain ("PeerHost", "1", chain id, this contract) and the
/// Ticket/Receipt type strings are those of `protocol/eip712.ts`; a test checks they are equal.
contract Settlement is ISettlement, EIP712, ReentrancyGuardTransient {
    bytes32 public constant TICKET_TYPEHASH = keccak256(
        "Ticket(bytes32 jobId,uint32 attempt,bytes32 functionId,bytes32 jobHash,bytes32 inputHash,address worker,address gateway,uint256 fee,uint64 epoch,uint64 deadline)"
    );
    bytes32 public constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(bytes32 jobId,uint32 attempt,bytes32 functionId,bytes32 jobHash,bytes32 inputHash,bytes32 outputHash,address worker,address gateway,uint256 fee,uint64 epoch,uint64 deadline)"
    );

    uint8 private constant FAULT_INVALID_TICKET = 1;
    uint8 private constant FAULT_LEAF_OUT_OF_RANGE = 2;
    uint8 private constant FAULT_BROKEN_SUM = 3;
    uint8 private constant FAULT_DOUBLE_CLAIM = 4;
    uint8 private constant FAULT_EQUIVOCATION = 5;
    uint8 private constant FAULT_DISAGREEMENT = 6;
    uint8 private constant FAULT_WITHHELD_LEAF = 7;

    uint8 private constant STATUS_COMMITTED = 1;
    uint8 private constant STATUS_FINALIZED = 2;
    uint8 private constant STATUS_VOIDED = 3;
    /// @dev The status is the low two bits of a batch word; this bit says the batch's {BatchExtra}
    /// was written (a leaf request or an exclusion), so an unchallenged batch never reads it.
    uint256 private constant STATUS_MASK = 0x03;
    uint256 private constant FLAG_CHALLENGED = 0x80;
    /// @dev A prepaid batch slot ({prepareBatchSlots}): nonzero, status 0 and commit time 1, so it
    /// holds no epoch's batch.
    uint256 private constant EMPTY_SLOT = 1 << 8;
    uint256 private constant MAX_CID_LENGTH = 128;
    /// @dev The longest an honest gateway signs tickets for one jobId: its longest job deadline
    /// (`LIMITS.maxDeadlineMs` in protocol/constants.ts; a test checks they are equal).
    uint256 private constant MAX_JOB_SPAN = 300;
    /// @dev Largest per-epoch allowance stored (2^96 - 1 wei, ≈ 7.9e10 ether: above any native
    /// currency's supply); a larger one is stored as this, i.e. unlimited.
    uint256 private constant MAX_ALLOWANCE = (1 << 96) - 1;

    IFunctionRegistry public immutable registry;
    IWorkerStaking public immutable staking;
    address public coordinator;
    address private immutable _initializer;
    uint64 public immutable genesis;
    uint64 public immutable epochLength;
    uint64 public immutable commitWindow;
    uint64 public immutable challengeWindow;
    uint128 public immutable minBatchBond;
    uint16 public immutable slashBps;
    uint16 public immutable challengerShareBps;
    uint8 public immutable disagreementQuorum;
    address public immutable treasury;
    /// @dev Slots of the allowance ring: more epochs than can be spent at once. An epoch `e` can be
    /// spent (commitBatch) until `current <= e + 1 + commitWindow / epochLength`, and in
    /// `chargeEscrow` only while current; so when a later epoch `e + _ring` is spent, `e` is dead.
    uint256 private immutable _ring;
    /// @dev Slots of a lane's batch ring (see `_batchSlots`): `(3 * commitWindow + challengeWindow +
    /// MAX_JOB_SPAN) / epochLength + 2`. Epoch `e`'s slot is rewritten only by a commit of epoch
    /// `e + k * _batchRing`, i.e. from `epochEnd(e + _batchRing)` on: after `e`'s commit window
    /// closed (so `e` can never be committed again), after an honest worker's batch of `e` was due
    /// (its challenge window, even extended by leaf requests, ends by `epochEnd(e) + 3 *
    /// commitWindow + challengeWindow`), and late enough that every duplicate of one of its jobs an
    /// honest gateway can have signed (within MAX_JOB_SPAN) can still be disputed against it.
    uint256 public immutable batchRing;

    struct BatchExtra {
        /// Fees of leaves excluded by {disputeDuplicateJob}, already refunded.
        uint128 excluded;
        /// Proofs and finalization wait until here when leaves were requested ({requestLeaf}).
        uint64 extendedUntil;
        /// Leaf requests not answered yet.
        uint32 openRequests;
    }

    struct Escrow {
        uint128 balance;
        uint128 withdrawalRequested;
        uint64 withdrawalUnlockAt;
    }


    mapping(bytes32 projectId => Escrow) private _escrows;
    /// @dev A gateway's allowance and what it spent per epoch, in a ring of `_ring` slots indexed by
    /// epoch: each slot holds `(epoch + 1) | spent << 64 | perEpoch << 160` (96 bits each; every
    /// slot carries the same `perEpoch`, so a commit reads one slot). An epoch's slot is reused
    /// only once nothing can spend for it any more (see `_ring`), so a slot is rewritten (≈ 5k gas)
    /// rather than created (22.1k).
    mapping(bytes32 projectId => mapping(address gateway => mapping(uint256 slot => uint256))) private _spentRing;
    /// @dev Batches, in a ring of `batchRing` slots per lane (worker, project, gateway) indexed by
    /// epoch: key `keccak256(abi.encode(worker, projectId, gateway, epoch % batchRing))`. A slot
    /// holds one batch: the first 184 bits of `keccak256(abi.encode(BatchHeader))`, its commit
    /// time (64 bits) and its status byte (status | FLAG_CHALLENGED). A commit rewrites the slot of
    /// an epoch `batchRing` earlier (≈ 5k gas) instead of creating one (22.1k). Which epoch a slot
    /// holds follows from its commit time: a batch of epoch `e` is committed in
    /// `[epochEnd(e), epochEnd(e) + commitWindow)`, and those windows are disjoint for the epochs
    /// sharing a slot (`batchRing * epochLength > commitWindow`). Every call naming a batch passes
    /// its header as calldata and is refused unless the slot holds its epoch and the header hashes
    /// to the stored one.
    mapping(bytes32 slotKey => uint256) private _batchSlots;
    /// @dev What only challenges change (zero for a batch nobody challenged).
    mapping(bytes32 batchId => BatchExtra) private _extras;
    mapping(bytes32 batchId => mapping(uint256 index => bool)) private _excluded;
    mapping(address account => uint256) private _owed;
    mapping(bytes32 key => bool) private _equivocations;
    mapping(bytes32 batchId => mapping(uint256 index => LeafRequest)) private _leafRequests;

    constructor(IFunctionRegistry registry_, IWorkerStaking staking_, Params memory p) EIP712("PeerHost", "1") {
        if (
            p.epochLength == 0 || p.commitWindow == 0 || p.challengeWindow == 0 || p.slashBps > 10_000
                || p.challengerShareBps > 10_000 || p.disagreementQuorum == 0 || p.treasury == address(0)
                // A worker must stay slashable for the whole life of its batches, leaf requests included.
                || staking_.unbondingPeriod() <= uint256(p.epochLength) + 3 * uint256(p.commitWindow) + p.challengeWindow
        ) revert SettlementInvalidParams();
        registry = registry_;
        staking = staking_;
        _initializer = msg.sender;
        genesis = uint64(block.timestamp);
        epochLength = p.epochLength;
        commitWindow = p.commitWindow;
        challengeWindow = p.challengeWindow;
        minBatchBond = p.minBatchBond;
        slashBps = p.slashBps;
        challengerShareBps = p.challengerShareBps;
        disagreementQuorum = p.disagreementQuorum;
        treasury = p.treasury;
        _ring = uint256(p.commitWindow) / p.epochLength + 3;
        batchRing = (3 * uint256(p.commitWindow) + p.challengeWindow + MAX_JOB_SPAN) / p.epochLength + 2;
    }

    /// @notice Sets the ExecutionCoordinator (the only caller of chargeEscrow/refundEscrow); callable
    /// once, by the deployer (the coordinator is deployed after this contract).
    function setCoordinator(address coordinator_) external {
        if (msg.sender != _initializer) revert SettlementUnauthorized(msg.sender);
        if (coordinator != address(0) || coordinator_ == address(0)) revert SettlementInvalidParams();
        coordinator = coordinator_;
        emit CoordinatorSet(coordinator_);
    }

    /// @dev Slashed stake arrives from WorkerStaking during {_void}; nothing else may send funds.
    receive() external payable {
        if (msg.sender != address(staking)) revert SettlementUnauthorized(msg.sender);
    }

    // ---------------------------------------------------------------- escrow

    /// @inheritdoc ISettlement
    function deposit(bytes32 projectId) external payable {
        if (msg.value == 0) revert SettlementZeroAmount();
        if (registry.ownerOf(projectId) == address(0)) revert SettlementUnknownProject(projectId);
        _escrows[projectId].balance += SafeCast.toUint128(msg.value);
        emit Deposited(projectId, msg.sender, msg.value);
    }

    /// @inheritdoc ISettlement
    function setGatewayAllowance(bytes32 projectId, address gateway, uint256 perEpoch) external {
        _onlyOwner(projectId);
        if (gateway == address(0)) revert SettlementInvalidGateway(gateway);
        // Every slot of the allowance ring carries the allowance, so the owner also pays for the
        // slots once (an empty slot is marked `spent = 1` with tag 0, which no epoch matches): a
        // commit rewrites a slot (≈ 5k gas) instead of creating one (22.1k).
        uint256 stored = perEpoch > MAX_ALLOWANCE ? MAX_ALLOWANCE : perEpoch;
        mapping(uint256 => uint256) storage ring = _spentRing[projectId][gateway];
        for (uint256 i = 0; i < _ring; i++) {
            uint256 low = uint160(ring[i]);
            ring[i] = (low == 0 ? 1 << 64 : low) | (stored << 160);
        }
        emit GatewayAllowanceSet(projectId, gateway, perEpoch);
    }

    /// @inheritdoc ISettlement
    function requestEscrowWithdrawal(bytes32 projectId, uint256 amount) external {
        _onlyOwner(projectId);
        if (amount == 0) revert SettlementZeroAmount();
        Escrow storage e = _escrows[projectId];
        e.withdrawalRequested = uint128(amount > type(uint128).max ? type(uint128).max : amount);
        uint64 unlockAt = uint64(block.timestamp) + epochLength + commitWindow;
        e.withdrawalUnlockAt = unlockAt;
        emit EscrowWithdrawalRequested(projectId, amount, unlockAt);
    }

    /// @inheritdoc ISettlement
    function withdrawEscrow(bytes32 projectId) external {
        address owner = _onlyOwner(projectId);
        Escrow storage e = _escrows[projectId];
        if (e.withdrawalRequested == 0) revert SettlementNoWithdrawalRequested(projectId);
        if (block.timestamp < e.withdrawalUnlockAt) revert SettlementEscrowLocked(e.withdrawalUnlockAt);
        uint128 amount = e.withdrawalRequested < e.balance ? e.withdrawalRequested : e.balance;
        e.balance -= amount;
        e.withdrawalRequested = 0;
        e.withdrawalUnlockAt = 0;
        _credit(owner, amount);
        emit EscrowWithdrawn(projectId, owner, amount);
    }

    /// @inheritdoc ISettlement
    function chargeEscrow(bytes32 projectId, address spender, uint256 amount) external nonReentrant {
        if (msg.sender != coordinator) revert SettlementUnauthorized(msg.sender);
        if (spender != registry.ownerOf(projectId)) _spendAllowance(projectId, spender, currentEpoch(), amount);
        Escrow storage e = _escrows[projectId];
        if (amount > e.balance) revert SettlementInsufficientEscrow(amount, e.balance);
        e.balance -= uint128(amount);
        emit EscrowCharged(projectId, spender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert SettlementTransferFailed(msg.sender, amount);
    }

    /// @inheritdoc ISettlement
    function refundEscrow(bytes32 projectId) external payable {
        if (msg.sender != coordinator) revert SettlementUnauthorized(msg.sender);
        _escrows[projectId].balance += SafeCast.toUint128(msg.value);
        emit EscrowRefunded(projectId, msg.value);
    }

    // ---------------------------------------------------------------- batches

    /// @inheritdoc ISettlement
    function commitBatch(bytes32 projectId, uint64 epoch, address gateway, bytes32 root, uint32 count, uint128 total, bytes calldata dataCid)
        external
        payable
        returns (bytes32 batchId)
    {
        if (!staking.isActiveWorker(msg.sender)) revert SettlementNotStakedWorker(msg.sender);
        batchId = _commit(BatchHeader(msg.sender, projectId, gateway, epoch, root, count, total, SafeCast.toUint128(msg.value)), dataCid, currentEpoch());
    }

    /// @inheritdoc ISettlement
    function commitBatches(BatchCommit[] calldata commits, BatchHeader[] calldata due) external payable nonReentrant {
        if (commits.length != 0 && !staking.isActiveWorker(msg.sender)) revert SettlementNotStakedWorker(msg.sender);
        // Finalizations first: a commit may reuse the ring slot of a batch finalized here.
        // The caller's own batches are paid to it at once (no credit to write, no withdraw
        // transaction); anyone else's are credited (pull payment, {withdraw}).
        uint256 payout;
        for (uint256 i = 0; i < due.length; i++) {
            (address worker, uint256 amount) = _finalize(due[i]);
            if (worker == msg.sender) payout += amount;
            else _credit(worker, amount);
        }
        uint64 current = currentEpoch();
        uint256 bonds;
        for (uint256 i = 0; i < commits.length; i++) {
            BatchCommit calldata c = commits[i];
            bonds += c.bond;
            _commit(BatchHeader(msg.sender, c.projectId, c.gateway, c.epoch, c.root, c.count, c.total, c.bond), c.dataCid, current);
        }
        if (bonds != msg.value) revert SettlementBondMismatch(msg.value, bonds);
        // No PaymentWithdrawn: each batch's BatchFinalized and header (its bond) say what is paid.
        if (payout != 0) {
            (bool ok,) = msg.sender.call{value: payout}("");
            if (!ok) revert SettlementTransferFailed(msg.sender, payout);
        }
    }


    /// @inheritdoc ISettlement
    function prepareBatchSlots(address worker, bytes32 projectId, address gateway) external {
        // Only empty slots: a prepared slot and an empty one mean the same (no batch), so anyone
        // may pay for any lane.
        for (uint256 i = 0; i < batchRing; i++) {
            bytes32 key = keccak256(abi.encode(worker, projectId, gateway, i));
            if (_batchSlots[key] == 0) _batchSlots[key] = EMPTY_SLOT;
        }
    }

    /// @dev One slot of the lane's ring per batch: the header's hash (its first 184 bits), its commit time and status.
    function _commit(BatchHeader memory h, bytes calldata dataCid, uint64 current) private returns (bytes32 batchId) {
        // The epoch must be over (all its tickets issued) and its commit window still open.
        if (h.epoch >= current || block.timestamp >= _epochEnd(h.epoch) + commitWindow) revert SettlementEpochNotCommittable(h.epoch, current);
        if (h.count == 0 || h.total == 0 || dataCid.length == 0 || dataCid.length > MAX_CID_LENGTH) revert SettlementEmptyBatch();
        if (h.bond < minBatchBond) revert SettlementBondTooSmall(h.bond, minBatchBond);
        batchId = batchIdOf(h.worker, h.projectId, h.epoch, h.gateway);
        bytes32 key = _slotKey(h.worker, h.projectId, h.gateway, h.epoch);
        uint256 old = _batchSlots[key];
        // This epoch's batch of the lane, whatever its status: one commit per batch id, ever (after
        // its commit window nothing can commit it anyway).
        if (_holds(old, h.epoch)) revert SettlementBatchExists(batchId);
        // An earlier epoch's batch still waiting for its finalization (or a proof) keeps its slot.
        if (old & STATUS_MASK == STATUS_COMMITTED) revert SettlementBatchSlotBusy(batchId);
        _spendAllowance(h.projectId, h.gateway, h.epoch, h.total);
        Escrow storage e = _escrows[h.projectId];
        if (h.total > e.balance) revert SettlementInsufficientEscrow(h.total, e.balance);
        e.balance -= h.total;
        _batchSlots[key] = (uint256(keccak256(abi.encode(h))) >> 72 << 72) | (block.timestamp << 8) | STATUS_COMMITTED;
        emit BatchCommitted(batchId, h.worker, h.projectId, h.gateway, h.epoch, h.root, h.count, h.total, h.bond, dataCid);
    }

    /// @dev Marks the batch finalized; returns what its worker is owed (total less exclusions, plus the bond).
    function _finalize(BatchHeader calldata h) private returns (address worker, uint256 amount) {
        (bytes32 batchId, bytes32 key, uint256 word) = _load(h);
        if (word & STATUS_MASK != STATUS_COMMITTED) revert SettlementBatchNotCommitted(batchId);
        BatchExtra memory x = _extraOf(batchId, word);
        uint64 endsAt = _challengeEnd(word, x.extendedUntil);
        if (block.timestamp < endsAt) revert SettlementChallengeWindowOpen(endsAt);
        if (x.openRequests != 0) revert SettlementLeafRequestsOpen(batchId, x.openRequests);
        _batchSlots[key] = _withStatus(word, STATUS_FINALIZED);
        uint256 paid = uint256(h.total) - x.excluded;
        emit BatchFinalized(batchId, h.worker, paid);
        return (h.worker, paid + h.bond);
    }

    // ---------------------------------------------------------------- fault proofs

    /// @inheritdoc ISettlement
    function requestLeaf(BatchHeader calldata h, uint256 index) external payable nonReentrant {
        (bytes32 batchId, bytes32 key, uint256 word) = _load(h);
        // Requests only in the original window, so a batch's life stays bounded.
        if (word & STATUS_MASK != STATUS_COMMITTED || block.timestamp >= uint256(uint64(word >> 8)) + challengeWindow) {
            revert SettlementBatchNotChallengeable(batchId);
        }
        if (index >= h.count) revert SettlementLeafOutOfRange(batchId, index);
        if (msg.value < minBatchBond) revert SettlementBondTooSmall(msg.value, minBatchBond);
        LeafRequest storage r = _leafRequests[batchId][index];
        if (r.requester != address(0)) revert SettlementLeafAlreadyRequested(batchId, index);
        uint64 deadline = uint64(block.timestamp) + commitWindow;
        r.requester = msg.sender;
        r.deadline = deadline;
        r.open = true;
        r.bond = SafeCast.toUint128(msg.value);
        BatchExtra storage x = _extras[batchId];
        x.openRequests += 1;
        if (word & FLAG_CHALLENGED == 0) _batchSlots[key] = word | FLAG_CHALLENGED;
        // Leave one more commit window to use the answer in a proof.
        uint64 until = deadline + commitWindow;
        if (until > x.extendedUntil) x.extendedUntil = until;
        emit LeafRequested(batchId, index, msg.sender, deadline);
    }

    /// @inheritdoc ISettlement
    function answerLeaf(BatchHeader calldata h, Leaf calldata leaf, bytes32[] calldata proof) external nonReentrant {
        (bytes32 batchId,, uint256 word) = _load(h);
        LeafRequest storage r = _leafRequests[batchId][leaf.index];
        if (!r.open) revert SettlementNoLeafRequest(batchId, leaf.index);
        if (word & STATUS_MASK != STATUS_COMMITTED) revert SettlementBatchNotChallengeable(batchId);
        if (block.timestamp >= r.deadline) revert SettlementAnswerWindowClosed(r.deadline);
        _verify(h, leaf, proof);
        r.open = false;
        _extras[batchId].openRequests -= 1;
        _credit(h.worker, r.bond);
        emit LeafAnswered(batchId, leaf.index, leaf);
    }

    /// @inheritdoc ISettlement
    function proveUnanswered(BatchHeader calldata h, uint256 index) external nonReentrant {
        bytes32 batchId = batchIdOf(h.worker, h.projectId, h.epoch, h.gateway);
        LeafRequest storage r = _leafRequests[batchId][index];
        if (!r.open) revert SettlementNoLeafRequest(batchId, index);
        if (block.timestamp < r.deadline) revert SettlementAnswerWindowOpen(r.deadline);
        // An open request means the batch was committed; a batch with one open is never finalized,
        // and its slot is reused only once it is not committed: so when the slot no longer holds it,
        // it was voided and only the bond is owed (the header's other fields play no part). While the
        // slot holds it, the header must be the committed one, or a forged header would close the
        // request without voiding the batch.
        bytes32 key = _slotKey(h.worker, h.projectId, h.gateway, h.epoch);
        uint256 word = _batchSlots[key];
        bool held = _holds(word, h.epoch);
        if (held && (uint256(keccak256(abi.encode(h))) ^ word) >> 72 != 0) revert SettlementHeaderMismatch(batchId);
        r.open = false;
        _extras[batchId].openRequests -= 1;
        _credit(r.requester, r.bond);
        if (held && word & STATUS_MASK == STATUS_COMMITTED) _voidFor(batchId, key, word, h, FAULT_WITHHELD_LEAF, r.requester);
    }

    /// @inheritdoc ISettlement
    function proveInvalidLeaf(BatchHeader calldata h, Leaf calldata leaf, bytes32[] calldata proof) external nonReentrant {
        (bytes32 batchId, bytes32 key, uint256 word) = _challengeable(h);
        _verify(h, leaf, proof);
        uint8 fault;
        if (leaf.index >= h.count) fault = FAULT_LEAF_OUT_OF_RANGE;
        else if (leaf.index == 0 && leaf.cumulativeFee != leaf.fee) fault = FAULT_BROKEN_SUM;
        else if (leaf.index == h.count - 1 && leaf.cumulativeFee != h.total) fault = FAULT_BROKEN_SUM;
        else if (!_ticketValid(h, leaf)) fault = FAULT_INVALID_TICKET;
        else revert SettlementNoFault();
        _voidFor(batchId, key, word, h, fault, msg.sender);
    }

    /// @inheritdoc ISettlement
    function proveBrokenSum(BatchHeader calldata h, Leaf calldata prev, bytes32[] calldata prevProof, Leaf calldata leaf, bytes32[] calldata proof)
        external
        nonReentrant
    {
        (bytes32 batchId, bytes32 key, uint256 word) = _challengeable(h);
        if (leaf.index == 0 || prev.index != leaf.index - 1) revert SettlementNotAdjacent(prev.index, leaf.index);
        _verify(h, prev, prevProof);
        _verify(h, leaf, proof);
        // Checked arithmetic: an overflowing prefix sum is itself broken.
        (bool ok, uint256 expected) = _tryAdd(prev.cumulativeFee, leaf.fee);
        if (ok && expected == leaf.cumulativeFee) revert SettlementNoFault();
        _voidFor(batchId, key, word, h, FAULT_BROKEN_SUM, msg.sender);
    }

    /// @inheritdoc ISettlement
    function disputeDuplicateJob(
        BatchHeader calldata ha, Leaf calldata a, bytes32[] calldata proofA,
        BatchHeader calldata hb, Leaf calldata b, bytes32[] calldata proofB
    ) external nonReentrant {
        (bytes32 batchB, bytes32 keyB, uint256 wordB) = _challengeable(hb);
        (bytes32 batchA,, uint256 wordA) = _load(ha);
        if (a.jobId != b.jobId || (batchA == batchB && a.index == b.index)) revert SettlementNotDuplicate();
        // One client request is one (gateway, project, jobId).
        if (ha.gateway != hb.gateway || ha.projectId != hb.projectId) revert SettlementNotDuplicate();
        _verify(ha, a, proofA);
        _verify(hb, b, proofB);
        if (batchA == batchB && a.attempt == b.attempt) {
            // The same ticket claimed twice by one worker.
            _voidFor(batchB, keyB, wordB, hb, FAULT_DOUBLE_CLAIM, msg.sender);
            return;
        }
        // Both tickets must be genuine: a forged leaf must be proven with proveInvalidLeaf instead,
        // and can never push a genuine leaf out.
        if (!_ticketValid(ha, a)) revert SettlementInvalidTicket(batchA, a.index);
        if (!_ticketValid(hb, b)) revert SettlementInvalidTicket(batchB, b.index);
        if (wordA & STATUS_MASK == STATUS_VOIDED || _excluded[batchA][a.index]) revert SettlementLeafExcluded(batchA, a.index);
        if (_excluded[batchB][b.index]) revert SettlementLeafExcluded(batchB, b.index);
        // Only leaves the total counts: an out-of-range leaf is a fault (proveInvalidLeaf), and the
        // exclusions of one batch can never refund more than it holds.
        if (a.index >= ha.count) revert SettlementLeafOutOfRange(batchA, a.index);
        if (b.index >= hb.count) revert SettlementLeafOutOfRange(batchB, b.index);
        BatchExtra storage xb = _extras[batchB];
        if (uint256(xb.excluded) + b.fee > hb.total) revert SettlementExclusionExceedsTotal(batchB);
        if (wordA & STATUS_MASK != STATUS_FINALIZED && !_outranks(batchA, a, batchB, b)) revert SettlementNoFault();
        _excluded[batchB][b.index] = true;
        xb.excluded += uint128(b.fee);
        if (wordB & FLAG_CHALLENGED == 0) _batchSlots[keyB] = wordB | FLAG_CHALLENGED;
        _escrows[hb.projectId].balance += uint128(b.fee);
        _restoreAllowance(hb.projectId, hb.gateway, hb.epoch, b.fee);
        emit LeafExcluded(batchB, b.index, b.jobId, b.fee);
    }

    /// @inheritdoc ISettlement
    function proveEquivocation(BatchHeader calldata h, Leaf calldata leaf, bytes32[] calldata proof, bytes32 otherOutputHash, bytes calldata signature)
        external
        nonReentrant
    {
        (bytes32 batchId, bytes32 key, uint256 word) = _challengeable(h);
        _verify(h, leaf, proof);
        if (otherOutputHash == leaf.outputHash) revert SettlementNoFault();
        // The second receipt must answer a ticket a staked gateway really issued: an honest worker
        // only runs those, so nobody else can make it sign two outputs for one ticket.
        if (!_ticketValid(h, leaf)) revert SettlementInvalidTicket(batchId, leaf.index);
        if (!_gatewayStaked(h.gateway)) revert SettlementGatewayNotStaked(h.gateway);
        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(
                    RECEIPT_TYPEHASH, leaf.jobId, leaf.attempt, leaf.functionId, leaf.jobHash, leaf.inputHash, otherOutputHash,
                    h.worker, h.gateway, leaf.fee, h.epoch, leaf.deadline
                )
            )
        );
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != h.worker) revert SettlementInvalidReceiptSignature(0);
        _voidFor(batchId, key, word, h, FAULT_EQUIVOCATION, msg.sender);
    }

    /// @inheritdoc ISettlement
    function proveReceiptEquivocation(
        Ticket calldata ticket,
        bytes calldata ticketSignature,
        Receipt calldata a,
        bytes calldata sigA,
        Receipt calldata b,
        bytes calldata sigB
    ) external nonReentrant {
        // Both receipts answer this one ticket (every ticket field equal) with two outputs.
        if (!_answers(a, ticket) || !_answers(b, ticket) || a.outputHash == b.outputHash) revert SettlementNoFault();
        // Bounded like a batch's life: a worker keeps its one-receipt-per-ticket record until then,
        // so a ticket replayed after the worker pruned its record can never be used against it.
        uint256 closes = _epochEnd(ticket.epoch) + commitWindow + challengeWindow;
        if (block.timestamp >= closes) revert SettlementProofWindowClosed(closes);
        // ...and the ticket was issued by a gateway that is staked as a gateway: a worker refuses
        // every other ticket, so a key of the attacker's choosing can never produce the pair.
        (address issuer, ECDSA.RecoverError errT,) = ECDSA.tryRecoverCalldata(_hashTicket(ticket), ticketSignature);
        if (errT != ECDSA.RecoverError.NoError || issuer != ticket.gateway) revert SettlementInvalidTicketSignature(0);
        if (!_gatewayStaked(ticket.gateway)) revert SettlementGatewayNotStaked(ticket.gateway);
        (address signerA, ECDSA.RecoverError errA,) = ECDSA.tryRecoverCalldata(_hashReceipt(a), sigA);
        if (errA != ECDSA.RecoverError.NoError || signerA != a.worker) revert SettlementInvalidReceiptSignature(0);
        (address signerB, ECDSA.RecoverError errB,) = ECDSA.tryRecoverCalldata(_hashReceipt(b), sigB);
        if (errB != ECDSA.RecoverError.NoError || signerB != b.worker) revert SettlementInvalidReceiptSignature(1);
        bytes32 key = keccak256(abi.encode(a.worker, a.gateway, a.jobId, a.attempt));
        if (_equivocations[key]) revert SettlementAlreadyProven(key);
        _equivocations[key] = true;
        uint256 slashed = staking.slash(a.worker, slashBps);
        uint256 share = slashed * challengerShareBps / 10_000;
        _credit(msg.sender, share);
        _credit(treasury, slashed - share);
        emit EquivocationProven(a.worker, a.jobId, a.attempt, msg.sender, slashed);
    }

    /// @inheritdoc ISettlement
    function proveDisagreement(
        BatchHeader calldata h,
        Leaf calldata leaf,
        bytes32[] calldata proof,
        Receipt[] calldata receipts,
        bytes[] calldata signatures,
        bytes[] calldata ticketSignatures
    ) external nonReentrant {
        (bytes32 batchId, bytes32 key, uint256 word) = _challengeable(h);
        _verify(h, leaf, proof);
        // Two honest runs of a function that reads the clock or Math.random differ: only a function
        // its builder declared deterministic can be wrong by disagreeing.
        if (!_deterministic(leaf.functionId)) revert SettlementNotDeterministic(leaf.functionId);
        if (!_ticketValid(h, leaf)) revert SettlementInvalidTicket(batchId, leaf.index);
        if (!_gatewayStaked(h.gateway)) revert SettlementGatewayNotStaked(h.gateway);
        if (receipts.length != signatures.length || receipts.length != ticketSignatures.length) revert SettlementLengthMismatch();
        if (receipts.length < disagreementQuorum) revert SettlementQuorumTooSmall(receipts.length, disagreementQuorum);
        bytes32 output = receipts[0].outputHash;
        if (output == leaf.outputHash) revert SettlementNoFault();
        address last;
        for (uint256 i = 0; i < receipts.length; i++) {
            Receipt calldata r = receipts[i];
            // The same job (jobHash binds bundle, options, env, secret names, input and deadline): a
            // different env or option may legitimately give a different output.
            if (
                r.functionId != leaf.functionId || r.jobHash != leaf.jobHash || r.inputHash != leaf.inputHash || r.outputHash != output
                    || r.worker == h.worker || r.gateway != h.gateway
            ) {
                revert SettlementReceiptMismatch(i);
            }
            if (r.worker <= last) revert SettlementSignersNotAscending(i);
            last = r.worker;
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(_hashReceipt(r), signatures[i]);
            if (err != ECDSA.RecoverError.NoError || signer != r.worker) revert SettlementInvalidReceiptSignature(i);
            if (!staking.isActiveWorker(r.worker)) revert SettlementSignerNotStaked(i);
            // Each receipt answers a ticket the batch's (staked) gateway issued to that worker for the
            // same job: receipts for tickets nobody issued, or from another gateway, do not count.
            if (!_receiptTicketSignedBy(r, ticketSignatures[i], h.gateway)) revert SettlementInvalidTicketSignature(i);
        }
        _voidFor(batchId, key, word, h, FAULT_DISAGREEMENT, msg.sender);
    }

    // ---------------------------------------------------------------- payments

    /// @inheritdoc ISettlement
    function withdraw() external nonReentrant {
        uint256 amount = _owed[msg.sender];
        if (amount == 0) revert SettlementNothingToWithdraw();
        _owed[msg.sender] = 0;
        emit PaymentWithdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert SettlementTransferFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- views

    function batchIdOf(address worker, bytes32 projectId, uint64 epoch, address gateway) public pure returns (bytes32) {
        return keccak256(abi.encode(worker, projectId, epoch, gateway));
    }

    /// @notice The state of the batch `batchIdOf(worker, projectId, epoch, gateway)`; all zero when
    /// it was never committed or its ring slot holds a later epoch's batch now (see `batchRing`).
    function getBatch(address worker, bytes32 projectId, uint64 epoch, address gateway) external view returns (Batch memory) {
        uint256 word = _batchSlots[_slotKey(worker, projectId, gateway, epoch)];
        if (!_holds(word, epoch)) return Batch(0, 0, 0, 0, 0);
        BatchExtra storage x = _extras[batchIdOf(worker, projectId, epoch, gateway)];
        return Batch(uint8(word & STATUS_MASK), uint64(word >> 8), x.excluded, x.extendedUntil, x.openRequests);
    }

    function escrowOf(bytes32 projectId) external view returns (uint256) {
        return _escrows[projectId].balance;
    }

    function escrowWithdrawalOf(bytes32 projectId) external view returns (uint256 amount, uint64 unlockAt) {
        Escrow storage e = _escrows[projectId];
        return (e.withdrawalRequested, e.withdrawalUnlockAt);
    }

    function allowanceOf(bytes32 projectId, address gateway) external view returns (uint256 perEpoch, uint256 spentThisEpoch) {
        uint64 epoch = currentEpoch();
        return (_spentRing[projectId][gateway][uint256(epoch) % _ring] >> 160, _spentIn(projectId, gateway, epoch));
    }

    /// @notice What `gateway` has spent of `projectId`'s escrow for `epoch` (batches and on-chain
    /// requests), while anything can still be spent or restored for it; 0 once its slot of the
    /// allowance ring holds a later epoch.
    function spentOf(bytes32 projectId, address gateway, uint64 epoch) external view returns (uint256) {
        return _spentIn(projectId, gateway, epoch);
    }

    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    function currentEpoch() public view returns (uint64) {
        return (uint64(block.timestamp) - genesis) / epochLength;
    }

    function isExcluded(bytes32 batchId, uint256 index) external view returns (bool) {
        return _excluded[batchId][index];
    }

    function getLeafRequest(bytes32 batchId, uint256 index) external view returns (LeafRequest memory) {
        return _leafRequests[batchId][index];
    }

    function hashTicket(Ticket calldata t) external view returns (bytes32) {
        return _hashTicket(t);
    }

    function hashReceipt(Receipt calldata r) external view returns (bytes32) {
        return _hashReceipt(r);
    }

    /// @notice Whether `signature` is `signer`'s signature of the ticket under this contract's domain.
    function verifyTicket(Ticket calldata t, bytes calldata signature, address signer) external view returns (bool) {
        (address got, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(_hashTicket(t), signature);
        return err == ECDSA.RecoverError.NoError && got == signer;
    }

    /// @notice Whether `signature` is `receipt.worker`'s signature of the receipt under this contract's domain.
    function verifyReceipt(Receipt calldata r, bytes calldata signature) external view returns (bool) {
        (address got, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(_hashReceipt(r), signature);
        return err == ECDSA.RecoverError.NoError && got == r.worker;
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function leafHash(Leaf calldata leaf) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(leaf))));
    }

    // ---------------------------------------------------------------- internals

    function _onlyOwner(bytes32 projectId) private view returns (address owner) {
        owner = registry.ownerOf(projectId);
        if (owner == address(0)) revert SettlementUnknownProject(projectId);
        if (owner != msg.sender) revert SettlementNotProjectOwner(projectId, msg.sender);
    }

    function _spendAllowance(bytes32 projectId, address gateway, uint64 epoch, uint256 amount) private {
        mapping(uint256 => uint256) storage ring = _spentRing[projectId][gateway];
        uint256 slot = uint256(epoch) % _ring;
        uint256 word = ring[slot];
        uint256 tag = uint256(epoch) + 1;
        uint64 held = uint64(word);
        // A later epoch in this slot: `epoch` is dead (see `_ring`); commitBatch and chargeEscrow
        // never get here with one, this only keeps a slot from going back in time.
        if (held > tag) revert SettlementAllowanceExceeded(amount, 0);
        uint256 perEpoch = word >> 160;
        uint256 spent = held == tag ? uint96(word >> 64) : 0;
        uint256 available = perEpoch > spent ? perEpoch - spent : 0;
        if (amount > available) revert SettlementAllowanceExceeded(amount, available);
        // spent + amount <= perEpoch < 2^96: no overflow into the allowance.
        ring[slot] = tag | ((spent + amount) << 64) | (perEpoch << 160);
    }

    function _spentIn(bytes32 projectId, address gateway, uint64 epoch) private view returns (uint256) {
        uint256 word = _spentRing[projectId][gateway][uint256(epoch) % _ring];
        return uint64(word) == uint256(epoch) + 1 ? uint96(word >> 64) : 0;
    }

    /// @dev Never below zero: every restore gives back part of an amount {_spendAllowance} added
    /// for the same (project, gateway, epoch), and each part is restored once (void or exclusion).
    /// Once the ring slot holds a later epoch, `epoch` can no longer be spent: nothing to restore.
    function _restoreAllowance(bytes32 projectId, address gateway, uint64 epoch, uint256 amount) private {
        mapping(uint256 => uint256) storage ring = _spentRing[projectId][gateway];
        uint256 slot = uint256(epoch) % _ring;
        uint256 word = ring[slot];
        if (uint64(word) != uint256(epoch) + 1) return;
        ring[slot] = word - (amount << 64);
    }

    function _epochEnd(uint64 epoch) private view returns (uint256) {
        return uint256(genesis) + (uint256(epoch) + 1) * epochLength;
    }

    /// @dev The batch `h` names, checked: its lane's slot holds a batch of `h.epoch` and `h` is its
    /// committed header.
    function _load(BatchHeader calldata h) private view returns (bytes32 batchId, bytes32 key, uint256 word) {
        batchId = batchIdOf(h.worker, h.projectId, h.epoch, h.gateway);
        key = _slotKey(h.worker, h.projectId, h.gateway, h.epoch);
        word = _batchSlots[key];
        if (!_holds(word, h.epoch)) revert SettlementUnknownBatch(batchId);
        if ((uint256(keccak256(abi.encode(h))) ^ word) >> 72 != 0) revert SettlementHeaderMismatch(batchId);
    }

    function _challengeable(BatchHeader calldata h) private view returns (bytes32 batchId, bytes32 key, uint256 word) {
        (batchId, key, word) = _load(h);
        if (word & STATUS_MASK != STATUS_COMMITTED || block.timestamp >= _challengeEnd(word, _extraOf(batchId, word).extendedUntil)) {
            revert SettlementBatchNotChallengeable(batchId);
        }
    }

    function _slotKey(address worker, bytes32 projectId, address gateway, uint64 epoch) private view returns (bytes32) {
        return keccak256(abi.encode(worker, projectId, gateway, uint256(epoch) % batchRing));
    }

    /// @dev Whether a batch slot holds a batch of `epoch`: committed (any status) within its commit
    /// window. Epochs sharing a slot have disjoint commit windows (see `batchRing`).
    function _holds(uint256 word, uint64 epoch) private view returns (bool) {
        uint256 at = uint64(word >> 8);
        uint256 end = _epochEnd(epoch);
        return word & STATUS_MASK != 0 && at >= end && at < end + commitWindow;
    }

    /// @dev The batch's {BatchExtra}, read only when a challenge wrote it.
    function _extraOf(bytes32 batchId, uint256 word) private view returns (BatchExtra memory x) {
        if (word & FLAG_CHALLENGED != 0) x = _extras[batchId];
    }

    function _challengeEnd(uint256 word, uint64 extendedUntil) private view returns (uint64) {
        uint64 end = uint64(word >> 8) + challengeWindow;
        return extendedUntil > end ? extendedUntil : end;
    }

    function _withStatus(uint256 word, uint8 status) private pure returns (uint256) {
        return (word & ~STATUS_MASK) | status;
    }

    function _verify(BatchHeader calldata h, Leaf calldata leaf, bytes32[] calldata proof) private pure {
        if (!MerkleProof.verifyCalldata(proof, h.root, leafHash(leaf))) revert SettlementInvalidProof();
    }

    /// @dev The ticket is rebuilt with the batch's worker, gateway and epoch; it must be signed by
    /// the batch's gateway (no high-s, v in {27, 28}) and name a function of the batch's project.
    function _ticketValid(BatchHeader calldata b, Leaf calldata leaf) private view returns (bool) {
        if (registry.projectOfFunction(leaf.functionId) != b.projectId) return false;
        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(
                    TICKET_TYPEHASH, leaf.jobId, leaf.attempt, leaf.functionId, leaf.jobHash, leaf.inputHash, b.worker, b.gateway,
                    leaf.fee, b.epoch, leaf.deadline
                )
            )
        );
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, leaf.v, leaf.r, leaf.s);
        return err == ECDSA.RecoverError.NoError && signer == b.gateway;
    }

    function _hashReceipt(Receipt calldata r) private view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    RECEIPT_TYPEHASH, r.jobId, r.attempt, r.functionId, r.jobHash, r.inputHash, r.outputHash, r.worker, r.gateway,
                    r.fee, r.epoch, r.deadline
                )
            )
        );
    }

    /// @dev Whether `r` answers exactly `t` (every ticket field equal).
    function _answers(Receipt calldata r, Ticket calldata t) private pure returns (bool) {
        return r.jobId == t.jobId && r.attempt == t.attempt && r.functionId == t.functionId && r.jobHash == t.jobHash
            && r.inputHash == t.inputHash && r.worker == t.worker && r.gateway == t.gateway && r.fee == t.fee && r.epoch == t.epoch
            && r.deadline == t.deadline;
    }

    /// @dev The ticket a receipt answers is the receipt without its output hash; whether `gateway`
    /// signed that ticket (and is the receipt's gateway).
    function _receiptTicketSignedBy(Receipt calldata r, bytes calldata signature, address gateway) private view returns (bool) {
        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(
                    TICKET_TYPEHASH, r.jobId, r.attempt, r.functionId, r.jobHash, r.inputHash, r.worker, r.gateway, r.fee, r.epoch,
                    r.deadline
                )
            )
        );
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        return err == ECDSA.RecoverError.NoError && signer == gateway;
    }

    /// @dev Whether `gateway` is staked as a gateway now. Virtual only so a deliberately broken
    /// variant (contracts/src/test/SettlementUnchecked.sol) can show the invariant fuzz detects a
    /// missing check.
    function _gatewayStaked(address gateway) internal view virtual returns (bool) {
        return staking.isActiveGateway(gateway);
    }

    /// @dev Whether the registry records `functionId` as deterministic. Virtual for the same reason.
    function _deterministic(bytes32 functionId) internal view virtual returns (bool) {
        return registry.isDeterministic(functionId);
    }

    function _hashTicket(Ticket calldata t) private view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    TICKET_TYPEHASH, t.jobId, t.attempt, t.functionId, t.jobHash, t.inputHash, t.worker, t.gateway, t.fee, t.epoch,
                    t.deadline
                )
            )
        );
    }

    /// @dev Strict total order between two leaves of one job: higher attempt, then lower batch id,
    /// then lower index.
    function _outranks(bytes32 batchA, Leaf calldata a, bytes32 batchB, Leaf calldata b) private pure returns (bool) {
        if (a.attempt != b.attempt) return a.attempt > b.attempt;
        if (batchA != batchB) return uint256(batchA) < uint256(batchB);
        return a.index < b.index;
    }

    /// @dev Voids a batch: refunds what is still held to the escrow, forfeits the bond and slashes
    /// the worker; the challenger gets its share of both, the treasury the rest.
    function _voidFor(bytes32 batchId, bytes32 key, uint256 word, BatchHeader calldata h, uint8 fault, address challenger) private {
        _batchSlots[key] = _withStatus(word, STATUS_VOIDED);
        uint256 refund = h.total - _extraOf(batchId, word).excluded;
        _escrows[h.projectId].balance += uint128(refund);
        // The batch spent the gateway's allowance for its epoch; a voided batch was never owed, so
        // give the allowance back or one fake batch would block the gateway's honest batches.
        _restoreAllowance(h.projectId, h.gateway, h.epoch, refund);
        uint256 slashed = staking.slash(h.worker, slashBps);
        uint256 forfeited = slashed + h.bond;
        uint256 share = forfeited * challengerShareBps / 10_000;
        _credit(challenger, share);
        _credit(treasury, forfeited - share);
        emit BatchVoided(batchId, challenger, fault, slashed);
    }

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        _owed[account] += amount;
        emit PaymentCredited(account, amount);
    }

    function _tryAdd(uint256 x, uint256 y) private pure returns (bool, uint256) {
        unchecked {
            uint256 z = x + y;
            return (z >= x, z);
        }
    }
}
