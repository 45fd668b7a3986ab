// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title PeerHost on-chain execution fallback
/// @notice A requester (a gateway, or anyone paying by value) asks for `redundancy` staked workers to
/// run a function on an input. Workers commit `keccak256(abi.encode(requestId, worker, outputHash, salt))`
/// — bound to the worker, so a copied commitment can never be revealed by the copier — until all
/// slots are taken or the commit deadline (half-way to the deadline) passes, then reveal. The result
/// is final as soon as a majority of `redundancy` reveals agree. {settle} (anyone, at the deadline or
/// once every slot revealed) pays each agreeing worker `fee / redundancy`, slashes `penaltyBps` of the
/// stake of workers that revealed something else or never revealed, and refunds the rest of the fee
/// to the requester (or to the project escrow when the request was paid from it). With no majority
/// the whole fee is refunded and only non-revealers are penalised.
interface IExecutionCoordinator {
    struct RequestParams {
        bytes32 functionId;
        bytes32 inputHash;
        /// Raw CID bytes of the canonical request, fetched by workers over IPFS.
        bytes inputCid;
        uint8 redundancy;
        uint128 fee;
        uint64 deadline;
        /// Pay from the project's escrow in Settlement (caller must be its owner or an authorised gateway).
        bool fromEscrow;
    }

    struct Request {
        address requester;
        uint8 redundancy;
        uint8 commits;
        uint8 reveals;
        bool fromEscrow;
        bool finalized;
        bool settled;
        uint64 createdAt;
        uint64 commitDeadline;
        uint64 deadline;
        uint128 fee;
        bytes32 functionId;
        bytes32 projectId;
        bytes32 inputHash;
        bytes32 outputHash;
    }

    struct Slot {
        address worker;
        bool revealed;
        bytes32 commitment;
        bytes32 outputHash;
    }

    event ExecutionRequested(
        uint256 indexed requestId, bytes32 indexed functionId, address indexed requester, bytes32 inputHash, bytes inputCid,
        uint8 redundancy, uint256 fee, uint64 commitDeadline, uint64 deadline
    );
    event ResultCommitted(uint256 indexed requestId, address indexed worker, bytes32 commitment);
    event ResultRevealed(uint256 indexed requestId, address indexed worker, bytes32 outputHash, bytes outputCid);
    /// @notice A majority agreed: the answer for gateways.
    event ExecutionFinalized(uint256 indexed requestId, bytes32 outputHash, bytes outputCid);
    event ExecutionSettled(uint256 indexed requestId, uint256 paid, uint256 refunded, uint256 slashed);
    event WorkerPenalized(uint256 indexed requestId, address indexed worker, uint256 amount);
    event PaymentCredited(address indexed account, uint256 amount);
    event PaymentWithdrawn(address indexed account, uint256 amount);

    error CoordinatorUnknownFunction(bytes32 functionId);
    error CoordinatorInvalidRedundancy(uint8 redundancy);
    error CoordinatorInvalidFee(uint256 fee);
    error CoordinatorInvalidDeadline(uint64 deadline);
    error CoordinatorInvalidInputCid();
    error CoordinatorWrongValue(uint256 expected, uint256 got);
    error CoordinatorUnknownRequest(uint256 requestId);
    error CoordinatorCommitPhaseOver(uint256 requestId);
    error CoordinatorRequestFull(uint256 requestId);
    error CoordinatorNotStakedWorker(address worker);
    error CoordinatorAlreadyCommitted(uint256 requestId, address worker);
    error CoordinatorInvalidCommitment();
    error CoordinatorNotCommitted(uint256 requestId, address worker);
    error CoordinatorAlreadyRevealed(uint256 requestId, address worker);
    error CoordinatorNotRevealPhase(uint256 requestId);
    error CoordinatorCommitmentMismatch(uint256 requestId, address worker);
    error CoordinatorInvalidOutputCid();
    error CoordinatorAlreadySettled(uint256 requestId);
    error CoordinatorNotSettleable(uint256 requestId, uint64 deadline);
    error CoordinatorUnauthorized(address caller);
    error CoordinatorNothingToWithdraw();
    error CoordinatorTransferFailed(address to, uint256 amount);
    error CoordinatorInvalidParams();

    /// @notice Opens a request; paid by `msg.value == fee`, or from the project escrow.
    function requestExecution(RequestParams calldata params) external payable returns (uint256 requestId);
    /// @notice A staked worker takes a slot with a worker-bound commitment of its output hash.
    function commit(uint256 requestId, bytes32 commitment) external;
    /// @notice Opens the caller's commitment; finalizes the result when a majority agrees.
    function reveal(uint256 requestId, bytes32 outputHash, bytes32 salt, bytes calldata outputCid) external;
    /// @notice Pays, penalises and refunds; anyone may call it at the deadline, or earlier once every slot revealed.
    function settle(uint256 requestId) external;
    /// @notice Pays the caller everything credited to it (pull payment).
    function withdraw() external;

    function commitmentOf(uint256 requestId, address worker, bytes32 outputHash, bytes32 salt) external pure returns (bytes32);
    function getRequest(uint256 requestId) external view returns (Request memory);
    function getSlots(uint256 requestId) external view returns (Slot[] memory);
    function owed(address account) external view returns (uint256);
    function requestCount() external view returns (uint256);
}
