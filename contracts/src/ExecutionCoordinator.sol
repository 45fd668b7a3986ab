// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IExecutionCoordinator} from "./interfaces/IExecutionCoordinator.sol";
import {IFunctionRegistry} from "./interfaces/IFunctionRegistry.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";
import {IWorkerStaking} from "./interfaces/IWorkerStaking.sol";

/// @title ExecutionCoordinator
/// @notice See {IExecutionCoordinator}.
contract ExecutionCoordinator is IExecutionCoordinator, ReentrancyGuardTransient {
    uint8 public constant MAX_REDUNDANCY = 15;
    /// Shortest request: long enough for a commit and a reveal transaction on Polygon.
    uint64 public constant MIN_WINDOW = 20;
    /// Longest request; WorkerStaking's unbonding period must be longer, so penalties always land.
    uint64 public constant MAX_WINDOW = 1 days;
    uint256 private constant MAX_CID_LENGTH = 128;

    IFunctionRegistry public immutable registry;
    IWorkerStaking public immutable staking;
    ISettlement public immutable settlement;
    uint16 public immutable penaltyBps;
    uint16 public immutable keeperShareBps;
    address public immutable treasury;

    /// Most workers in the draw pool: a draw reads every member once, so this bounds its gas (≈ 2.5k
    /// per member; 128 members ≈ 0.35 M gas, paid by the first committer or whoever calls {draw}).
    uint256 public constant MAX_POOL = 128;

    uint256 private _count;
    mapping(uint256 requestId => Request) private _requests;
    mapping(uint256 requestId => Slot[]) private _slots;
    mapping(uint256 requestId => mapping(address worker => uint256 slotPlusOne)) private _slotOf;
    mapping(uint256 requestId => mapping(bytes32 outputHash => uint256)) private _votes;
    mapping(address account => uint256) private _owed;

    struct Member {
        uint128 weight;
        uint64 joinedBlock;
        uint32 indexPlusOne;
        bytes32 encryptionKey;
    }

    mapping(uint256 requestId => bytes) private _inputCid;

    address[] private _pool;
    mapping(address worker => Member) private _members;

    /// @param penaltyBps_ share of a misbehaving worker's stake slashed per request.
    /// @param keeperShareBps_ share of each penalty paid to whoever calls {settle}; the rest to `treasury_`.
    constructor(
        IFunctionRegistry registry_, IWorkerStaking staking_, ISettlement settlement_, uint16 penaltyBps_, uint16 keeperShareBps_,
        address treasury_
    ) {
        if (
            penaltyBps_ > 10_000 || keeperShareBps_ > 10_000 || treasury_ == address(0) || staking_.unbondingPeriod() <= MAX_WINDOW
        ) revert CoordinatorInvalidParams();
        registry = registry_;
        staking = staking_;
        settlement = settlement_;
        penaltyBps = penaltyBps_;
        keeperShareBps = keeperShareBps_;
        treasury = treasury_;
    }

    /// @dev Funds arrive from Settlement (escrow charges) and WorkerStaking (penalties) only.
    receive() external payable {
        if (msg.sender != address(settlement) && msg.sender != address(staking)) revert CoordinatorUnauthorized(msg.sender);
    }

    /// @inheritdoc IExecutionCoordinator
    function requestExecution(RequestParams calldata p) external payable nonReentrant returns (uint256 requestId) {
        bytes32 projectId = registry.projectOfFunction(p.functionId);
        if (projectId == bytes32(0)) revert CoordinatorUnknownFunction(p.functionId);
        if (p.redundancy == 0 || p.redundancy > MAX_REDUNDANCY) revert CoordinatorInvalidRedundancy(p.redundancy);
        if (p.fee == 0) revert CoordinatorInvalidFee(p.fee);
        if (p.deadline < block.timestamp + MIN_WINDOW || p.deadline > block.timestamp + MAX_WINDOW) revert CoordinatorInvalidDeadline(p.deadline);
        if (p.inputCid.length > MAX_CID_LENGTH) revert CoordinatorInvalidInputCid();
        uint256 expected = p.fromEscrow ? 0 : p.fee;
        if (msg.value != expected) revert CoordinatorWrongValue(expected, msg.value);

        requestId = ++_count;
        uint64 commitDeadline = uint64(block.timestamp + (p.deadline - block.timestamp) / 2);
        Request storage r = _requests[requestId];
        r.requester = msg.sender;
        r.redundancy = p.redundancy;
        r.fromEscrow = p.fromEscrow;
        r.createdAt = uint64(block.timestamp);
        r.commitDeadline = commitDeadline;
        r.deadline = p.deadline;
        r.fee = p.fee;
        r.functionId = p.functionId;
        r.projectId = projectId;
        r.inputHash = p.inputHash;
        r.seedBlock = uint64(block.number);
        if (p.inputCid.length != 0) _inputCid[requestId] = p.inputCid;
        // read now: a later change of the declaration cannot turn honest dissent into a penalty
        r.deterministic = registry.isDeterministic(p.functionId);
        emit ExecutionRequested(
            requestId, p.functionId, msg.sender, p.inputHash, p.inputCid, p.redundancy, p.fee, commitDeadline, p.deadline
        );
        // Interaction last: Settlement is trusted, but keep the order anyway.
        if (p.fromEscrow) settlement.chargeEscrow(projectId, msg.sender, p.fee);
    }

    /// @inheritdoc IExecutionCoordinator
    function join(bytes32 encryptionKey) external {
        if (!staking.isActiveWorker(msg.sender)) revert CoordinatorNotStakedWorker(msg.sender);
        if (encryptionKey == bytes32(0)) revert CoordinatorInvalidKey();
        Member storage m = _members[msg.sender];
        if (m.indexPlusOne == 0) {
            if (_pool.length >= MAX_POOL) revert CoordinatorPoolFull(MAX_POOL);
            _pool.push(msg.sender);
            m.indexPlusOne = uint32(_pool.length);
        }
        uint128 weight = staking.stakeOf(msg.sender).amount;
        m.weight = weight;
        m.joinedBlock = uint64(block.number);
        m.encryptionKey = encryptionKey;
        emit PoolJoined(msg.sender, weight, encryptionKey);
    }

    /// @inheritdoc IExecutionCoordinator
    function postInput(uint256 requestId, bytes calldata inputCid) external {
        Request storage r = _open(requestId);
        if (msg.sender != r.requester) revert CoordinatorNotRequester(requestId, msg.sender);
        if (_inputCid[requestId].length != 0) revert CoordinatorInputAlreadySet(requestId);
        if (inputCid.length == 0 || inputCid.length > MAX_CID_LENGTH) revert CoordinatorInvalidInputCid();
        if (block.timestamp >= r.commitDeadline) revert CoordinatorCommitPhaseOver(requestId);
        if (!r.drawn) _draw(requestId, r);
        _inputCid[requestId] = inputCid;
        emit InputPosted(requestId, inputCid);
    }

    function inputCidOf(uint256 requestId) external view returns (bytes memory) {
        return _inputCid[requestId];
    }

    /// @inheritdoc IExecutionCoordinator
    function leave() external {
        _remove(msg.sender);
    }

    /// @inheritdoc IExecutionCoordinator
    function prune(address worker) external {
        if (staking.isActiveWorker(worker)) revert CoordinatorStillActive(worker);
        _remove(worker);
    }

    /// @inheritdoc IExecutionCoordinator
    function draw(uint256 requestId) external {
        Request storage r = _open(requestId);
        if (!r.drawn) _draw(requestId, r);
    }

    /// @inheritdoc IExecutionCoordinator
    function commit(uint256 requestId, bytes32 commitment) external {
        Request storage r = _open(requestId);
        if (block.timestamp >= r.commitDeadline) revert CoordinatorCommitPhaseOver(requestId);
        if (commitment == bytes32(0)) revert CoordinatorInvalidCommitment();
        if (!r.drawn) _draw(requestId, r);
        uint256 slotPlusOne = _slotOf[requestId][msg.sender];
        if (slotPlusOne == 0) revert CoordinatorNotDrawn(requestId, msg.sender);
        // drawn while active; a worker that withdrew or was slashed since cannot take part any more
        if (!staking.isActiveWorker(msg.sender)) revert CoordinatorNotStakedWorker(msg.sender);
        Slot storage s = _slots[requestId][slotPlusOne - 1];
        if (s.committed) revert CoordinatorAlreadyCommitted(requestId, msg.sender);
        s.committed = true;
        s.commitment = commitment;
        r.commits += 1;
        emit ResultCommitted(requestId, msg.sender, commitment);
    }

    /// @inheritdoc IExecutionCoordinator
    function reveal(uint256 requestId, bytes32 outputHash, bytes32 salt, bytes calldata outputCid) external {
        Request storage r = _open(requestId);
        uint256 slotPlusOne = _slotOf[requestId][msg.sender];
        if (slotPlusOne == 0) revert CoordinatorNotCommitted(requestId, msg.sender);
        Slot storage s = _slots[requestId][slotPlusOne - 1];
        if (!s.committed) revert CoordinatorNotCommitted(requestId, msg.sender);
        if (s.revealed) revert CoordinatorAlreadyRevealed(requestId, msg.sender);
        if ((r.commits < r.drawnSlots && block.timestamp < r.commitDeadline) || block.timestamp >= r.deadline) {
            revert CoordinatorNotRevealPhase(requestId);
        }
        if (outputCid.length == 0 || outputCid.length > MAX_CID_LENGTH) revert CoordinatorInvalidOutputCid();
        if (commitmentOf(requestId, msg.sender, outputHash, salt) != s.commitment) revert CoordinatorCommitmentMismatch(requestId, msg.sender);
        s.revealed = true;
        s.outputHash = outputHash;
        r.reveals += 1;
        uint256 votes = ++_votes[requestId][outputHash];
        if (votes > r.topVotes) r.topVotes = uint8(votes);
        emit ResultRevealed(requestId, msg.sender, outputHash, outputCid);
        // a non-deterministic function has no "right" output: the first reveal (reveals open only
        // once every drawn slot committed or the commit phase is over) is the answer
        if (!r.finalized && (!r.deterministic || votes > r.drawnSlots / 2)) {
            r.finalized = true;
            r.outputHash = outputHash;
            emit ExecutionFinalized(requestId, outputHash, outputCid);
        }
    }

    /// @inheritdoc IExecutionCoordinator
    function settle(uint256 requestId) external nonReentrant {
        Request storage r = _requests[requestId];
        if (r.requester == address(0)) revert CoordinatorUnknownRequest(requestId);
        if (r.settled) revert CoordinatorAlreadySettled(requestId);
        bool atDeadline = block.timestamp >= r.deadline;
        if (!atDeadline && !_settleableEarly(r)) revert CoordinatorNotSettleable(requestId, r.deadline);
        r.settled = true;

        Slot[] storage slots = _slots[requestId];
        uint256 share = r.drawnSlots == 0 ? 0 : uint256(r.fee) / r.drawnSlots;
        uint256 paid;
        uint256 slashedTotal;
        for (uint256 i = 0; i < slots.length; i++) {
            Slot storage s = slots[i];
            bool pay = r.finalized && s.revealed && (!r.deterministic || s.outputHash == r.outputHash);
            // dissent is a fault only where one right output exists; a commitment never opened is a
            // fault only once its owner's time (the deadline) is over. A drawn worker that never
            // committed is not penalised: the requester controls whether the input can be had.
            bool fault = (s.committed && !s.revealed && atDeadline) ||
                (r.deterministic && r.finalized && s.revealed && s.outputHash != r.outputHash);
            if (pay) {
                paid += share;
                _credit(s.worker, share);
            } else if (fault) {
                uint256 amount = staking.slash(s.worker, penaltyBps);
                if (amount != 0) {
                    slashedTotal += amount;
                    uint256 keeper = amount * keeperShareBps / 10_000;
                    _credit(msg.sender, keeper);
                    _credit(treasury, amount - keeper);
                    emit WorkerPenalized(requestId, s.worker, amount);
                }
            }
        }
        uint256 refund = uint256(r.fee) - paid;
        emit ExecutionSettled(requestId, paid, refund, slashedTotal);
        if (refund != 0) {
            if (r.fromEscrow) settlement.refundEscrow{value: refund}(r.projectId);
            else _credit(r.requester, refund);
        }
    }

    /// @inheritdoc IExecutionCoordinator
    function withdraw() external nonReentrant {
        uint256 amount = _owed[msg.sender];
        if (amount == 0) revert CoordinatorNothingToWithdraw();
        _owed[msg.sender] = 0;
        emit PaymentWithdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert CoordinatorTransferFailed(msg.sender, amount);
    }

    function commitmentOf(uint256 requestId, address worker, bytes32 outputHash, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(requestId, worker, outputHash, salt));
    }

    /// @inheritdoc IExecutionCoordinator
    function drawnWorkers(uint256 requestId) external view returns (address[] memory workers) {
        Request storage r = _requests[requestId];
        if (r.requester == address(0)) revert CoordinatorUnknownRequest(requestId);
        if (r.drawn) {
            Slot[] storage slots = _slots[requestId];
            workers = new address[](slots.length);
            for (uint256 i = 0; i < slots.length; i++) workers[i] = slots[i].worker;
            return workers;
        }
        if (block.number <= r.seedBlock) revert CoordinatorSeedNotReady(requestId, r.seedBlock);
        (workers,) = _select(requestId, r);
    }

    /// @inheritdoc IExecutionCoordinator
    function outcome(uint256 requestId) external view returns (uint8) {
        Request storage r = _requests[requestId];
        if (r.requester == address(0)) revert CoordinatorUnknownRequest(requestId);
        if (r.settled) return 3;
        if (r.finalized) return 1;
        if (_undecidable(r) || block.timestamp >= r.deadline) return 2;
        return 0;
    }

    function poolSize() external view returns (uint256) {
        return _pool.length;
    }

    function poolMember(address worker) external view returns (uint256 weight, uint64 joinedBlock, bytes32 encryptionKey) {
        Member storage m = _members[worker];
        return (m.weight, m.joinedBlock, m.encryptionKey);
    }

    function getRequest(uint256 requestId) external view returns (Request memory) {
        return _requests[requestId];
    }

    function getSlots(uint256 requestId) external view returns (Slot[] memory) {
        return _slots[requestId];
    }

    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    function requestCount() external view returns (uint256) {
        return _count;
    }

    function _open(uint256 requestId) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.requester == address(0)) revert CoordinatorUnknownRequest(requestId);
        if (r.settled) revert CoordinatorAlreadySettled(requestId);
    }

    /// @dev Weighted draw without replacement, independent of pool order: each eligible member scores
    /// `keccak256(seed, requestId, worker) / weight` and the `redundancy` lowest scores win. Eligible:
    /// joined (or last refreshed) before the seed block, and an active worker now, weighing
    /// min(weight at join, stake now) — so stake added, or a join made, once the seed is known buys
    /// nothing, and a member leaving or lowering its stake can only give up its own chance (the
    /// others' scores do not move). More stake ⇒ a lower score, but the chance is not exactly
    /// proportional to stake (see docs/chain.md).
    function _select(uint256 requestId, Request storage r) private view returns (address[] memory winners, bytes32 seed) {
        seed = blockhash(r.seedBlock);
        if (seed == bytes32(0)) return (new address[](0), seed);
        uint256 k = r.redundancy;
        address[] memory best = new address[](k);
        uint256[] memory scores = new uint256[](k);
        uint256 n;
        uint256 len = _pool.length;
        for (uint256 i = 0; i < len; i++) {
            address w = _pool[i];
            Member storage m = _members[w];
            if (m.joinedBlock >= r.seedBlock || m.weight == 0) continue;
            uint256 h = uint256(keccak256(abi.encode(seed, requestId, w)));
            // cheap bound first (weight can only shrink below): skip members that cannot enter
            if (n == k && h / m.weight >= scores[k - 1]) continue;
            if (!staking.isActiveWorker(w)) continue;
            uint256 weight = staking.stakeOf(w).amount;
            if (weight > m.weight) weight = m.weight;
            uint256 score = h / weight;
            if (n == k && score >= scores[k - 1]) continue;
            uint256 j = n < k ? n++ : k - 1;
            while (j > 0 && scores[j - 1] > score) {
                scores[j] = scores[j - 1];
                best[j] = best[j - 1];
                j--;
            }
            scores[j] = score;
            best[j] = w;
        }
        winners = new address[](n);
        for (uint256 i = 0; i < n; i++) winners[i] = best[i];
    }

    function _draw(uint256 requestId, Request storage r) private {
        if (block.number <= r.seedBlock) revert CoordinatorSeedNotReady(requestId, r.seedBlock);
        (address[] memory winners, bytes32 seed) = _select(requestId, r);
        r.drawn = true;
        r.drawnSlots = uint8(winners.length);
        Slot[] storage slots = _slots[requestId];
        for (uint256 i = 0; i < winners.length; i++) {
            slots.push(Slot({worker: winners[i], committed: false, revealed: false, commitment: bytes32(0), outputHash: bytes32(0)}));
            _slotOf[requestId][winners[i]] = i + 1;
        }
        emit SlotsDrawn(requestId, winners, seed);
    }

    /// @dev No result can be reached any more. Before the draw nothing is known (unless the seed is
    /// gone for good); after it: a deterministic function needs more than half the drawn slots to
    /// agree, a non-deterministic one any reveal; slots that can still reveal are the committed ones
    /// not revealed yet, plus — while the commit phase runs — the ones not committed yet.
    function _undecidable(Request storage r) private view returns (bool) {
        if (r.finalized) return false;
        if (!r.drawn) return block.number > r.seedBlock + 256;
        uint256 open = r.commits - r.reveals;
        if (block.timestamp < r.commitDeadline) open += r.drawnSlots - r.commits;
        uint256 needed = r.deterministic ? uint256(r.drawnSlots) / 2 + 1 : 1;
        return uint256(r.topVotes) + open < needed;
    }

    function _settleableEarly(Request storage r) private view returns (bool) {
        // every committed slot revealed and no one else can commit any more
        bool allIn = r.drawn && r.reveals == r.commits &&
            (r.commits == r.drawnSlots || block.timestamp >= r.commitDeadline);
        return allIn || _undecidable(r);
    }

    function _remove(address worker) private {
        Member storage m = _members[worker];
        uint256 idx = m.indexPlusOne;
        if (idx == 0) revert CoordinatorNotInPool(worker);
        address last = _pool[_pool.length - 1];
        _pool[idx - 1] = last;
        _members[last].indexPlusOne = uint32(idx);
        _pool.pop();
        delete _members[worker];
        emit PoolLeft(worker);
    }

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        _owed[account] += amount;
        emit PaymentCredited(account, amount);
    }
}
