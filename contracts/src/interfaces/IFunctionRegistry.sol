// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title PeerHost function registry
/// @notice Projects are namespaced by the wallet that created them (`<wallet>/<project>`), so
/// `projectId = keccak256(abi.encode(namespace, name))` and
/// `functionId = keccak256(abi.encode(projectId, functionName))`, exactly as `protocol/eip712.ts`
/// derives them. Every deploy records a manifest CID as a new version; the active version is the
/// latest one unless the owner rolls back. A transfer changes the owner, never the namespace, so
/// URLs keep working. Gateways follow the events.
interface IFunctionRegistry {
    struct Version {
        /// Raw bytes of the manifest's CIDv1.
        bytes manifestCid;
        /// Source commit hash (git SHA-1 left-aligned, or SHA-256); zero when not from git.
        bytes32 sourceCommit;
        uint64 deployedAt;
    }

    /// @notice A deploy changed whether `functionId` is declared deterministic.
    event FunctionDeterminismSet(bytes32 indexed functionId, bool deterministic);
    /// @notice A project was created in `namespace` (its creator's wallet).
    event ProjectCreated(bytes32 indexed projectId, address indexed namespace, string name);
    /// @notice A function name was seen for the first time in a deploy of `projectId`.
    event FunctionRegistered(bytes32 indexed functionId, bytes32 indexed projectId, string name);
    /// @notice A deploy recorded `version` (1-based) and made it active.
    event VersionDeployed(bytes32 indexed projectId, uint32 indexed version, bytes manifestCid, bytes32 sourceCommit);
    /// @notice The owner re-pointed the project to an earlier (or later) existing version.
    event VersionActivated(bytes32 indexed projectId, uint32 indexed version, uint32 previousVersion);
    /// @notice The owner offered the project to `pendingOwner`, who must accept.
    event ProjectTransferStarted(bytes32 indexed projectId, address indexed owner, address indexed pendingOwner);
    /// @notice `newOwner` accepted the project.
    event ProjectTransferred(bytes32 indexed projectId, address indexed previousOwner, address indexed newOwner);

    /// @notice Project or function names must be 1–64 characters of `[a-z0-9-]`.
    error RegistryInvalidName(string name);
    /// @notice A deploy must carry a manifest CID of 1–128 bytes.
    error RegistryInvalidManifest();
    /// @notice A deploy lists 1–64 functions.
    error RegistryInvalidFunctionCount(uint256 count);
    /// @notice `deterministicMask` has a bit set at or above `count` (bit i describes functions[i]).
    error RegistryInvalidDeterministicMask(uint256 mask, uint256 count);
    /// @notice Only the namespace's wallet may create a project in it.
    error RegistryNotNamespaceOwner(address namespace, address caller);
    /// @notice The caller does not own the project.
    error RegistryNotProjectOwner(bytes32 projectId, address caller);
    /// @notice No project has this id.
    error RegistryUnknownProject(bytes32 projectId);
    /// @notice The project has no such version.
    error RegistryUnknownVersion(bytes32 projectId, uint32 version);
    /// @notice The version is already the active one.
    error RegistryVersionAlreadyActive(bytes32 projectId, uint32 version);
    /// @notice A transfer to the zero address or to the current owner.
    error RegistryInvalidNewOwner(address newOwner);
    /// @notice The caller is not the pending owner of the project.
    error RegistryNotPendingOwner(bytes32 projectId, address caller);

    /// @notice Records a new version of `namespace/name` and activates it; creates the project on its
    /// first deploy (only `namespace` itself may do that), and registers every function id.
    /// @param functions function names in the manifest (each `functionId` maps back to this project).
    /// @param deterministicMask bit i set ⇔ `functions[i]` declares `"deterministic": true` in
    /// peerhost.json (same input ⇒ same output). Every listed function's flag is overwritten by this
    /// deploy; bits at or above `functions.length` revert with {RegistryInvalidDeterministicMask}.
    function deploy(
        address namespace,
        string calldata name,
        bytes calldata manifestCid,
        bytes32 sourceCommit,
        string[] calldata functions,
        uint256 deterministicMask
    ) external returns (bytes32 projectId, uint32 version);

    /// @notice Whether the latest deploy that listed `functionId` declared it deterministic. Only a
    /// deterministic function can be the subject of a disagreement proof or a dissent penalty: two
    /// honest runs of a function that reads the clock or `Math.random` legitimately differ.
    /// A rollback does not change the flag (it is a property the builder declares, not of a version);
    /// false for unknown functions.
    /// @param functionId `keccak256(abi.encode(projectId, functionName))`.
    function isDeterministic(bytes32 functionId) external view returns (bool);

    /// @notice Makes an existing version the active one.
    function rollback(bytes32 projectId, uint32 version) external;

    /// @notice Offers the project to `newOwner` (two-step, so a typo cannot lose a project).
    function transferProject(bytes32 projectId, address newOwner) external;

    /// @notice Accepts a pending transfer.
    function acceptProject(bytes32 projectId) external;

    function ownerOf(bytes32 projectId) external view returns (address);
    function pendingOwnerOf(bytes32 projectId) external view returns (address);
    function projectOfFunction(bytes32 functionId) external view returns (bytes32);
    function activeVersion(bytes32 projectId) external view returns (uint32);
    function versionCount(bytes32 projectId) external view returns (uint32);
    function getVersion(bytes32 projectId, uint32 version) external view returns (Version memory);
}
