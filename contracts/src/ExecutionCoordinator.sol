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

    uint256 private _count;
    mapping(uint256 requestId => Request) private _requests;
    mapping(uint256 requestId => Slot[]) private _slots;
    mapping(uint256 requestId => mapping(address worker => uint256 slotPlusOne)) private _slotOf;
    mapping(uint256 requestId => mapping(bytes32 outputHash => uint256)) private _votes;
    mapping(address account => uint256) private _owed;

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
        if (p.inputCid.length == 0 || p.inputCid.length > MAX_CID_LENGTH) revert CoordinatorInvalidInputCid();
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
        emit ExecutionRequested(
            requestId, p.functionId, msg.sender, p.inputHash, p.inputCid, p.redundancy, p.fee, commitDeadline, p.deadline
        );
        // Interaction last: Settlement is trusted, but keep the order anyway.
        if (p.fromEscrow) settlement.chargeEscrow(projectId, msg.sender, p.fee);
    }

    /// @inheritdoc IExecutionCoordinator
    function commit(uint256 requestId, bytes32 commitment) external {
        Request storage r = _open(requestId);
        if (block.timestamp >= r.commitDeadline) revert CoordinatorCommitPhaseOver(requestId);
        if (r.commits >= r.redundancy) revert CoordinatorRequestFull(requestId);
        if (commitment == bytes32(0)) revert CoordinatorInvalidCommitment();
        if (!staking.isActiveWorker(msg.sender)) revert CoordinatorNotStakedWorker(msg.sender);
        if (_slotOf[requestId][msg.sender] != 0) revert CoordinatorAlreadyCommitted(requestId, msg.sender);
        _slots[requestId].push(Slot({worker: msg.sender, revealed: false, commitment: commitment, outputHash: bytes32(0)}));
        _slotOf[requestId][msg.sender] = _slots[requestId].length;
        r.commits += 1;
        emit ResultCommitted(requestId, msg.sender, commitment);
    }

    /// @inheritdoc IExecutionCoordinator
    function reveal(uint256 requestId, bytes32 outputHash, bytes32 salt, bytes calldata outputCid) external {
        Request storage r = _open(requestId);
        uint256 slotPlusOne = _slotOf[requestId][msg.sender];
        if (slotPlusOne == 0) revert CoordinatorNotCommitted(requestId, msg.sender);
        Slot storage s = _slots[requestId][slotPlusOne - 1];
        if (s.revealed) revert CoordinatorAlreadyRevealed(requestId, msg.sender);
        if ((r.commits < r.redundancy && block.timestamp < r.commitDeadline) || block.timestamp >= r.deadline) {
            revert CoordinatorNotRevealPhase(requestId);
        }
        if (outputCid.length == 0 || outputCid.length > MAX_CID_LENGTH) revert CoordinatorInvalidOutputCid();
        if (commitmentOf(requestId, msg.sender, outputHash, salt) != s.commitment) revert CoordinatorCommitmentMismatch(requestId, msg.sender);
        s.revealed = true;
        s.outputHash = outputHash;
        r.reveals += 1;
        uint256 votes = ++_votes[requestId][outputHash];
        emit ResultRevealed(requestId, msg.sender, outputHash, outputCid);
        if (!r.finalized && votes > r.redundancy / 2) {
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
        bool allRevealed = r.commits == r.redundancy && r.reveals == r.commits;
        if (block.timestamp < r.deadline && !allRevealed) revert CoordinatorNotSettleable(requestId, r.deadline);
        r.settled = true;

        Slot[] storage slots = _slots[requestId];
        uint256 share = uint256(r.fee) / r.redundancy;
        uint256 paid;
        uint256 slashedTotal;
        for (uint256 i = 0; i < slots.length; i++) {
            Slot storage s = slots[i];
            if (r.finalized && s.revealed && s.outputHash == r.outputHash) {
                paid += share;
                _credit(s.worker, share);
            } else if (!s.revealed || r.finalized) {
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

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        _owed[account] += amount;
        emit PaymentCredited(account, amount);
    }
}
