// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title PeerHost on-chain execution fallback
/// @notice A requester (a gateway, or anyone paying by value) asks for `redundancy` staked workers to
/// run a function on an input. Slots are not first-come: the workers are **drawn** from the pool of
/// staked workers that joined (see {join}) before the request's block, weighted by stake, with the
/// hash of the block that includes the request as the seed — a value no one knows when the request
/// is sent (only that block's proposer can bias it, by grinding its content; see docs/chain.md).
/// Only drawn workers may commit `keccak256(abi.encode(requestId, worker, outputHash, salt))` —
/// bound to the worker, so a copied commitment can never be revealed by the copier — until every
/// drawn slot committed or the commit deadline (half-way to the deadline) passes; then they reveal.
/// A function declared deterministic in FunctionRegistry (read when the request is made) is final
/// as soon as a majority of the drawn slots agree, and only then can dissent be penalised; any other
/// function is final with its first reveal, every revealer is paid and no output is ever penalised.
/// {settle} (anyone, at the deadline, once every committed slot revealed, or as soon as no result is
/// possible any more) pays each paid worker `fee / drawn slots`, slashes `penaltyBps` of the stake of
/// deterministic dissenters and (at the deadline) of workers that committed but never revealed, and
/// refunds the rest of the fee to the requester (or to the project escrow when paid from it).
interface IExecutionCoordinator {
    struct RequestParams {
        bytes32 functionId;
        bytes32 inputHash;
        /// Raw CID bytes of the input document, fetched by workers over IPFS; empty for a sealed request,
        /// whose (encrypted) input the requester posts with {postInput} once the slots are drawn.
        bytes inputCid;
        uint8 redundancy;
        uint128 fee;
        uint64 deadline;
        /// Pay from the project's escrow in Settlement (caller must be its owner or an authorised gateway).
        bool fromEscrow;
    }

    struct Request {
        address requester;
        /// slots asked for
        uint8 redundancy;
        /// slots drawn (≤ redundancy: fewer when fewer workers were eligible); 0 until drawn
        uint8 drawnSlots;
        uint8 commits;
        uint8 reveals;
        /// most reveals of one output hash so far
        uint8 topVotes;
        bool drawn;
        /// FunctionRegistry's flag for the function when the request was made
        bool deterministic;
        bool fromEscrow;
        bool finalized;
        bool settled;
        /// the block whose hash seeds the draw: the block that included the request
        uint64 seedBlock;
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
        bool committed;
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
    /// @notice The slots of a request were drawn (`workers` in slot order; empty when no one was eligible
    /// or the seed block's hash was no longer available, 256 blocks after the request).
    event SlotsDrawn(uint256 indexed requestId, address[] workers, bytes32 seed);
    /// @notice A worker entered (or refreshed its weight in) the pool slots are drawn from.
    event PoolJoined(address indexed worker, uint256 weight, bytes32 encryptionKey);
    /// @notice The requester posted the input of a sealed request (encrypted to the drawn workers).
    event InputPosted(uint256 indexed requestId, bytes inputCid);
    event PoolLeft(address indexed worker);
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
    error CoordinatorNotDrawn(uint256 requestId, address worker);
    error CoordinatorSeedNotReady(uint256 requestId, uint64 seedBlock);
    error CoordinatorPoolFull(uint256 max);
    error CoordinatorNotInPool(address worker);
    error CoordinatorStillActive(address worker);
    error CoordinatorInvalidKey();
    error CoordinatorNotRequester(uint256 requestId, address caller);
    error CoordinatorInputAlreadySet(uint256 requestId);

    /// @notice Opens a request; paid by `msg.value == fee`, or from the project escrow.
    function requestExecution(RequestParams calldata params) external payable returns (uint256 requestId);
    /// @notice A drawn worker commits a worker-bound commitment of its output hash (draws first when needed).
    function commit(uint256 requestId, bytes32 commitment) external;
    /// @notice Draws the slots of a request (anyone; once; from the block after the request's block).
    function draw(uint256 requestId) external;
    /// @notice An active worker enters the pool with its current stake as weight (again: refreshes the
    /// weight). A (re)join counts only for requests made in later blocks, so weight cannot be bought
    /// after a seed is known.
    /// `encryptionKey`: the worker's X25519 public key, which sealed inputs are encrypted to.
    function join(bytes32 encryptionKey) external;
    /// @notice The requester of a sealed request posts its input document's CID (once, during the
    /// commit phase; draws the slots first when needed), encrypted to the drawn workers' keys.
    function postInput(uint256 requestId, bytes calldata inputCid) external;
    /// @notice The input document CID of a request (empty until posted for a sealed request).
    function inputCidOf(uint256 requestId) external view returns (bytes memory);
    /// @notice The caller leaves the pool.
    function leave() external;
    /// @notice Anyone removes a worker that is no longer an active staked worker from the pool.
    function prune(address worker) external;
    /// @notice Opens the caller's commitment; finalizes the result when a majority agrees.
    function reveal(uint256 requestId, bytes32 outputHash, bytes32 salt, bytes calldata outputCid) external;
    /// @notice Pays, penalises and refunds; anyone may call it at the deadline, or earlier once every committed
    /// slot revealed after the commit phase, or as soon as no result is possible any more ({decided}).
    function settle(uint256 requestId) external;
    /// @notice Pays the caller everything credited to it (pull payment).
    function withdraw() external;

    function commitmentOf(uint256 requestId, address worker, bytes32 outputHash, bytes32 salt) external pure returns (bytes32);
    function getRequest(uint256 requestId) external view returns (Request memory);
    function getSlots(uint256 requestId) external view returns (Slot[] memory);
    function owed(address account) external view returns (uint256);
    function requestCount() external view returns (uint256);
    /// @notice The drawn workers of a request, computed when not stored yet (reverts before the seed block is past).
    function drawnWorkers(uint256 requestId) external view returns (address[] memory);
    /// @notice 0 = open, 1 = finalized (a result exists), 2 = no result possible any more (undecidable now:
    /// no majority can form, or no drawn worker can still reveal), 3 = settled.
    function outcome(uint256 requestId) external view returns (uint8);
    function poolSize() external view returns (uint256);
    function poolMember(address worker) external view returns (uint256 weight, uint64 joinedBlock, bytes32 encryptionKey);
}
