// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title PeerHost batched settlement
/// @notice Builders fund a project escrow and authorise gateways with a per-epoch allowance. After an
/// epoch ends, each worker commits, per (project, epoch, gateway), one Merkle root over its
/// (ticket, receipt) leaves with the leaf count, the total fee and a bond. The batch's total is
/// taken from the escrow at once, held during the challenge window, and paid (with the bond) by
/// pull payment when the window closes.
///
/// Leaves ({Leaf}) are `StandardMerkleTree` leaves (`keccak256(bytes.concat(keccak256(abi.encode(leaf))))`),
/// verified with OpenZeppelin's `MerkleProof`. A leaf carries a prefix sum (`cumulativeFee`), so
/// the committed total is provable from the leaves: leaf `i` must satisfy
/// `cumulativeFee(i) = cumulativeFee(i-1) + fee(i)`, leaf 0 `cumulativeFee = fee`, the leaf at
/// `count - 1` `cumulativeFee = total`, and no leaf may have `index >= count`.
///
/// The ticket of a leaf is rebuilt from the leaf and the batch (worker, gateway and epoch come from
/// the batch), so a ticket signed for another worker, gateway or epoch fails its signature check.
///
/// Data availability: anyone may request a leaf during the window ({requestLeaf}); a request left
/// unanswered for `commitWindow` voids the batch.
///
/// A voided batch (and an excluded leaf) gives back the gateway allowance it spent for its epoch.
///
/// Faults (each voids the batch, refunds its total to the escrow, slashes `slashBps` of the worker's
/// stake and forfeits the bond; the challenger gets `challengerShareBps` of both, the rest goes to
/// the treasury): an invalid ticket, a broken sum, a leaf out of range, the same ticket claimed
/// twice, equivocation, and disagreement with a quorum of other staked workers.
///
/// jobId rule: a client pays at most once per (gateway, jobId). Two leaves with the same jobId in
/// different batches, or with different attempts in one batch, are not a fault (the gateway retried
/// and signed both tickets): {disputeDuplicateJob} excludes the lower-ranked leaf from payment and
/// refunds its fee to the escrow; nobody is slashed. Rank: a leaf of a finalized batch outranks all;
/// otherwise the higher attempt wins, then the lower batch id, then the lower index. The same
/// (jobId, attempt) twice in one batch is a double claim: a fault.
interface ISettlement {
    struct Leaf {
        uint256 index;
        uint256 cumulativeFee;
        bytes32 jobId;
        uint32 attempt;
        bytes32 functionId;
        /// The ticket's jobHash (protocol/canonical.ts), so the ticket can be rebuilt from the leaf.
        bytes32 jobHash;
        bytes32 inputHash;
        bytes32 outputHash;
        uint256 fee;
        uint64 deadline;
        /// The gateway's ticket signature, split (v, r, s); high-s is rejected.
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @dev Same fields, order and types as `protocol/eip712.ts` `Receipt`: every Ticket field plus
    /// `outputHash`, so a receipt answers exactly one ticket.
    struct Receipt {
        bytes32 jobId;
        uint32 attempt;
        bytes32 functionId;
        bytes32 jobHash;
        bytes32 inputHash;
        bytes32 outputHash;
        address worker;
        address gateway;
        uint256 fee;
        uint64 epoch;
        uint64 deadline;
    }

    /// @dev Same fields, order and types as `protocol/eip712.ts` `Ticket`.
    struct Ticket {
        bytes32 jobId;
        uint32 attempt;
        bytes32 functionId;
        /// keccak256 of the canonical job: bundle, options, env, secret names, input, deadline.
        bytes32 jobHash;
        bytes32 inputHash;
        address worker;
        address gateway;
        uint256 fee;
        uint64 epoch;
        uint64 deadline;
    }

    /// @notice A committed batch's fields. Settlement stores only a hash of it: every call naming a
    /// batch takes its header as calldata (from {BatchCommitted}: the event carries every field) and
    /// is refused ({SettlementHeaderMismatch}) unless it hashes to the committed one. The batch id
    /// is `batchIdOf(worker, projectId, epoch, gateway)`.
    struct BatchHeader {
        address worker;
        bytes32 projectId;
        address gateway;
        uint64 epoch;
        bytes32 root;
        uint32 count;
        uint128 total;
        /// The bond sent with the commit.
        uint128 bond;
    }

    /// @notice One batch of {commitBatches}: the caller is its worker.
    struct BatchCommit {
        bytes32 projectId;
        uint64 epoch;
        address gateway;
        bytes32 root;
        uint32 count;
        uint128 total;
        uint128 bond;
        bytes dataCid;
    }

    /// @notice A batch's state ({getBatch}); its fields are in its {BatchHeader}.
    struct Batch {
        /// 0 none, 1 committed, 2 finalized, 3 voided.
        uint8 status;
        uint64 committedAt;
        /// Fees of leaves excluded by {disputeDuplicateJob}, already refunded.
        uint128 excluded;
        /// Proofs and finalization wait until here when leaves were requested ({requestLeaf}).
        uint64 extendedUntil;
        /// Leaf requests not answered yet.
        uint32 openRequests;
    }

    struct LeafRequest {
        address requester;
        uint64 deadline;
        bool open;
        uint128 bond;
    }

    struct Params {
        /// Epoch length in seconds; epoch `e` covers `[genesis + e*epochLength, genesis + (e+1)*epochLength)`.
        uint64 epochLength;
        /// Seconds after an epoch ends during which its batches may be committed.
        uint64 commitWindow;
        /// Seconds after a commit during which faults may be proven.
        uint64 challengeWindow;
        /// Smallest bond a commit must carry.
        uint128 minBatchBond;
        /// Share of the worker's stake slashed on a proven fault (basis points).
        uint16 slashBps;
        /// Share of the slashed stake and bond paid to the challenger (basis points).
        uint16 challengerShareBps;
        /// Distinct other staked workers whose receipts prove a disagreement.
        uint8 disagreementQuorum;
        /// Receives the non-challenger share of slashed funds.
        address treasury;
    }

    event Deposited(bytes32 indexed projectId, address indexed from, uint256 amount);
    event GatewayAllowanceSet(bytes32 indexed projectId, address indexed gateway, uint256 perEpoch);
    event EscrowWithdrawalRequested(bytes32 indexed projectId, uint256 amount, uint64 unlockAt);
    event EscrowWithdrawn(bytes32 indexed projectId, address indexed to, uint256 amount);
    event BatchCommitted(
        bytes32 indexed batchId, address indexed worker, bytes32 indexed projectId, address gateway, uint64 epoch,
        bytes32 root, uint32 count, uint256 total, uint256 bond, bytes dataCid
    );
    event BatchFinalized(bytes32 indexed batchId, address indexed worker, uint256 paid);
    /// @notice `fault`: 1 invalid ticket, 2 leaf out of range, 3 broken sum, 4 double claim,
    /// 5 equivocation, 6 disagreement, 7 withheld leaf (an unanswered {requestLeaf}).
    event BatchVoided(bytes32 indexed batchId, address indexed challenger, uint8 indexed fault, uint256 slashed);
    event LeafExcluded(bytes32 indexed batchId, uint256 indexed index, bytes32 indexed jobId, uint256 fee);
    event EscrowCharged(bytes32 indexed projectId, address indexed spender, uint256 amount);
    event EscrowRefunded(bytes32 indexed projectId, uint256 amount);
    event PaymentCredited(address indexed account, uint256 amount);
    event PaymentWithdrawn(address indexed account, uint256 amount);
    event CoordinatorSet(address coordinator);
    event LeafRequested(bytes32 indexed batchId, uint256 indexed index, address indexed requester, uint64 deadline);
    /// @notice The leaf data, published on chain: anyone can now check it and prove a fault.
    event LeafAnswered(bytes32 indexed batchId, uint256 indexed index, Leaf leaf);
    event EquivocationProven(address indexed worker, bytes32 indexed jobId, uint32 attempt, address indexed challenger, uint256 slashed);

    error SettlementUnknownProject(bytes32 projectId);
    error SettlementNotProjectOwner(bytes32 projectId, address caller);
    error SettlementZeroAmount();
    error SettlementInvalidGateway(address gateway);
    error SettlementNoWithdrawalRequested(bytes32 projectId);
    error SettlementEscrowLocked(uint64 unlockAt);
    error SettlementNotStakedWorker(address worker);
    error SettlementEpochNotCommittable(uint64 epoch, uint64 currentEpoch);
    error SettlementBatchExists(bytes32 batchId);
    /// @notice The ring slot this batch would use still holds an earlier batch of the same lane
    /// (worker, project, gateway) that is neither finalized nor voided: finalize it first (in the
    /// same {commitBatches}: finalizations run before commits).
    error SettlementBatchSlotBusy(bytes32 batchId);
    error SettlementEmptyBatch();
    error SettlementBondTooSmall(uint256 bond, uint256 minimum);
    error SettlementInsufficientEscrow(uint256 needed, uint256 available);
    error SettlementAllowanceExceeded(uint256 needed, uint256 available);
    error SettlementUnknownBatch(bytes32 batchId);
    /// @notice The header passed is not the one committed for that batch id.
    error SettlementHeaderMismatch(bytes32 batchId);
    /// @notice {commitBatches}: `msg.value` must be the sum of the batches' bonds.
    error SettlementBondMismatch(uint256 value, uint256 bonds);
    error SettlementBatchNotChallengeable(bytes32 batchId);
    error SettlementChallengeWindowOpen(uint64 endsAt);
    error SettlementBatchNotCommitted(bytes32 batchId);
    error SettlementInvalidProof();
    error SettlementNoFault();
    error SettlementNotAdjacent(uint256 prevIndex, uint256 index);
    error SettlementNotDuplicate();
    error SettlementLeafExcluded(bytes32 batchId, uint256 index);
    error SettlementInvalidTicket(bytes32 batchId, uint256 index);
    error SettlementLeafOutOfRange(bytes32 batchId, uint256 index);
    error SettlementExclusionExceedsTotal(bytes32 batchId);
    error SettlementAlreadyProven(bytes32 key);
    error SettlementLeafAlreadyRequested(bytes32 batchId, uint256 index);
    error SettlementNoLeafRequest(bytes32 batchId, uint256 index);
    error SettlementLeafRequestsOpen(bytes32 batchId, uint32 open);
    error SettlementAnswerWindowOpen(uint64 deadline);
    error SettlementAnswerWindowClosed(uint64 deadline);
    error SettlementQuorumTooSmall(uint256 given, uint256 needed);
    error SettlementLengthMismatch();
    error SettlementReceiptMismatch(uint256 i);
    error SettlementInvalidReceiptSignature(uint256 i);
    error SettlementSignersNotAscending(uint256 i);
    error SettlementSignerNotStaked(uint256 i);
    /// @notice The ticket behind a receipt-based proof was not issued by a gateway staked as a gateway.
    error SettlementGatewayNotStaked(address gateway);
    /// @notice Ticket signature `i` of a proof is not the gateway's signature of the ticket.
    error SettlementInvalidTicketSignature(uint256 i);
    /// @notice Disagreement is only a fault for functions declared deterministic in the registry.
    error SettlementNotDeterministic(bytes32 functionId);
    /// @notice A receipt equivocation proof after the ticket's epoch ended plus the commit and challenge windows.
    error SettlementProofWindowClosed(uint256 closedAt);
    error SettlementUnauthorized(address caller);
    error SettlementNothingToWithdraw();
    error SettlementTransferFailed(address to, uint256 amount);
    error SettlementInvalidParams();

    /// @notice Adds `msg.value` to the project's escrow (anyone may fund a project).
    function deposit(bytes32 projectId) external payable;
    /// @notice The project owner lets `gateway` spend up to `perEpoch` of the escrow per epoch (0 revokes).
    function setGatewayAllowance(bytes32 projectId, address gateway, uint256 perEpoch) external;
    /// @notice The owner asks to withdraw `amount`; possible after one epoch plus the commit window, so
    /// tickets already issued can still be settled.
    function requestEscrowWithdrawal(bytes32 projectId, uint256 amount) external;
    /// @notice Credits the owner with the requested amount (or what is left of the escrow).
    function withdrawEscrow(bytes32 projectId) external;
    /// @notice Commits the caller's batch for (projectId, epoch, gateway); `msg.value` is the bond.
    /// @param dataCid CID of the published leaf list, so challengers can fetch it.
    function commitBatch(bytes32 projectId, uint64 epoch, address gateway, bytes32 root, uint32 count, uint128 total, bytes calldata dataCid)
        external payable returns (bytes32 batchId);
    /// @notice Finalizes the batches of `due` (anyone's), each after its challenge window with no
    /// leaf request open, then commits several batches of the caller in one transaction
    /// (`msg.value` = the sum of their bonds, each at least `minBatchBond`). A finalized batch's
    /// worker is owed the batch total (less exclusions) plus the bond: paid at once when the worker
    /// is the caller (no PaymentWithdrawn: BatchFinalized and the header say what was paid), else
    /// credited (pull payment, {withdraw}). A worker's one transaction per settlement tick; with no
    /// commits (and no value) anyone may use it to finalize.
    function commitBatches(BatchCommit[] calldata commits, BatchHeader[] calldata due) external payable;
    /// @notice Pays, once, for the `batchRing` storage slots of a lane (`worker`'s batches for
    /// `projectId` and `gateway`), so that each commit of that lane rewrites a slot (≈ 5k gas)
    /// instead of creating one (22.1k). Optional (without it, each slot is created by the lane's
    /// first commit that uses it) and harmless: it writes a mark meaning "no batch" into empty
    /// slots only; anyone may pay for any lane.
    function prepareBatchSlots(address worker, bytes32 projectId, address gateway) external;
    /// @notice Data availability: during the challenge window anyone may ask for leaf `index` of a
    /// batch, with a bond of at least `minBatchBond`. The leaf must be published with {answerLeaf}
    /// within `commitWindow`, or the batch is voided ({proveUnanswered}). A request extends the
    /// batch's challenge window to one `commitWindow` after its answer deadline.
    function requestLeaf(BatchHeader calldata batch, uint256 index) external payable;
    /// @notice Publishes a requested leaf (anyone may; usually the worker); the request bond is
    /// credited to the batch's worker for its trouble.
    function answerLeaf(BatchHeader calldata batch, Leaf calldata leaf, bytes32[] calldata proof) external;
    /// @notice After the answer deadline of an open request: voids the batch (fault 7, the requester
    /// is the challenger) and returns the request bond; on a batch voided meanwhile, only returns the bond.
    function proveUnanswered(BatchHeader calldata batch, uint256 index) external;
    /// @notice Proves a leaf whose ticket is not signed by the batch's gateway (or is for another
    /// project's function), a leaf out of range, or a boundary leaf with a wrong prefix sum.
    function proveInvalidLeaf(BatchHeader calldata batch, Leaf calldata leaf, bytes32[] calldata proof) external;
    /// @notice Proves two adjacent leaves whose prefix sums do not add up.
    function proveBrokenSum(BatchHeader calldata batch, Leaf calldata prev, bytes32[] calldata prevProof, Leaf calldata leaf, bytes32[] calldata proof)
        external;
    /// @notice Two leaves with one jobId: a fault when they are one ticket claimed twice in one batch;
    /// otherwise the lower-ranked leaf (`b`) is excluded and its fee refunded.
    function disputeDuplicateJob(
        BatchHeader calldata batchA, Leaf calldata a, bytes32[] calldata proofA,
        BatchHeader calldata batchB, Leaf calldata b, bytes32[] calldata proofB
    ) external;
    /// @notice Proves the batch's worker signed another output hash for a leaf's ticket. The leaf's
    /// ticket must be validly signed by the batch's gateway, which must be staked as a gateway.
    function proveEquivocation(BatchHeader calldata batch, Leaf calldata leaf, bytes32[] calldata proof, bytes32 otherOutputHash, bytes calldata signature)
        external;
    /// @notice Proves equivocation without a batch: two receipts signed by one worker answering one
    /// `ticket` (every ticket field equal) with different output hashes, where `ticket` is signed by
    /// `ticket.gateway` and that gateway is staked as a gateway ({IWorkerStaking-isActiveGateway}).
    /// Only until `ticket.epoch` ends plus `commitWindow` plus `challengeWindow` (a batch's life), so
    /// workers know how long to keep their one-receipt-per-ticket record. Slashes `slashBps` of the
    /// worker's stake once per (worker, gateway, jobId, attempt); the challenger gets
    /// `challengerShareBps` of it.
    function proveReceiptEquivocation(
        Ticket calldata ticket, bytes calldata ticketSignature, Receipt calldata a, bytes calldata sigA, Receipt calldata b, bytes calldata sigB
    ) external;
    /// @notice Proves that at least `disagreementQuorum` other staked workers (signers strictly
    /// ascending) signed one output hash, different from the leaf's, for the leaf's job (same
    /// functionId, jobHash and inputHash). Only for functions the registry records as deterministic;
    /// the batch's gateway must be staked as a gateway, the leaf's ticket valid, and each receipt
    /// must come with `ticketSignatures[i]`: the batch's gateway's signature of the ticket the
    /// receipt answers (the receipt without its output hash).
    function proveDisagreement(
        BatchHeader calldata batch,
        Leaf calldata leaf,
        bytes32[] calldata proof,
        Receipt[] calldata receipts,
        bytes[] calldata signatures,
        bytes[] calldata ticketSignatures
    ) external;
    /// @notice ExecutionCoordinator only: pays `amount` of the escrow to the coordinator for an
    /// on-chain request by `spender` (the owner, or a gateway within its allowance this epoch).
    function chargeEscrow(bytes32 projectId, address spender, uint256 amount) external;
    /// @notice ExecutionCoordinator only: returns an unspent on-chain request fee to the escrow.
    function refundEscrow(bytes32 projectId) external payable;
    /// @notice Pays the caller everything credited to it (pull payment).
    function withdraw() external;

    function batchIdOf(address worker, bytes32 projectId, uint64 epoch, address gateway) external pure returns (bytes32);
    function getBatch(address worker, bytes32 projectId, uint64 epoch, address gateway) external view returns (Batch memory);
    function escrowOf(bytes32 projectId) external view returns (uint256);
    function allowanceOf(bytes32 projectId, address gateway) external view returns (uint256 perEpoch, uint256 spentThisEpoch);
    function owed(address account) external view returns (uint256);
    function currentEpoch() external view returns (uint64);
    function isExcluded(bytes32 batchId, uint256 index) external view returns (bool);
    function getLeafRequest(bytes32 batchId, uint256 index) external view returns (LeafRequest memory);
    function hashTicket(Ticket calldata ticket) external view returns (bytes32);
    function hashReceipt(Receipt calldata receipt) external view returns (bytes32);
    function leafHash(Leaf calldata leaf) external pure returns (bytes32);
}
