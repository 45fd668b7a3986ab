// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IFunctionRegistry} from "./interfaces/IFunctionRegistry.sol";

/// @title FunctionRegistry
/// @notice See {IFunctionRegistry}. Holds no funds and has no admin.
contract FunctionRegistry is IFunctionRegistry {
    uint256 private constant MAX_NAME_LENGTH = 64;
    uint256 private constant MAX_CID_LENGTH = 128;
    uint256 private constant MAX_FUNCTIONS = 64;

    struct Project {
        address owner;
        uint32 active;
        uint32 count;
        address pendingOwner;
    }

    mapping(bytes32 projectId => Project) private _projects;
    mapping(bytes32 projectId => mapping(uint32 version => Version)) private _versions;
    mapping(bytes32 functionId => bytes32 projectId) private _functionProject;
    /// @dev Set by every deploy that lists the function (the latest deploy wins), so a builder
    /// can change the declaration; a rollback does not change it (see {IFunctionRegistry-isDeterministic}).
    mapping(bytes32 functionId => bool) private _deterministic;

    /// @inheritdoc IFunctionRegistry
    function deploy(
        address namespace,
        string calldata name,
        bytes calldata manifestCid,
        bytes32 sourceCommit,
        string[] calldata functions,
        uint256 deterministicMask
    )
        external
        returns (bytes32 projectId, uint32 version)
    {
        if (manifestCid.length == 0 || manifestCid.length > MAX_CID_LENGTH) revert RegistryInvalidManifest();
        if (functions.length == 0 || functions.length > MAX_FUNCTIONS) revert RegistryInvalidFunctionCount(functions.length);
        // A bit past the list would be silently meaningless; refuse it so a miscounted mask is caught.
        if (deterministicMask >> functions.length != 0) revert RegistryInvalidDeterministicMask(deterministicMask, functions.length);
        projectId = keccak256(abi.encode(namespace, name));
        Project storage p = _projects[projectId];
        if (p.owner == address(0)) {
            if (namespace != msg.sender) revert RegistryNotNamespaceOwner(namespace, msg.sender);
            _checkName(name);
            p.owner = msg.sender;
            emit ProjectCreated(projectId, namespace, name);
        } else if (p.owner != msg.sender) {
            revert RegistryNotProjectOwner(projectId, msg.sender);
        }
        for (uint256 i = 0; i < functions.length; i++) {
            _checkName(functions[i]);
            bytes32 fid = keccak256(abi.encode(projectId, functions[i]));
            if (_functionProject[fid] == bytes32(0)) {
                _functionProject[fid] = projectId;
                emit FunctionRegistered(fid, projectId, functions[i]);
            }
            bool det = (deterministicMask >> i) & 1 == 1;
            if (_deterministic[fid] != det) {
                _deterministic[fid] = det;
                emit FunctionDeterminismSet(fid, det);
            }
        }
        version = p.count + 1;
        p.count = version;
        uint32 previous = p.active;
        p.active = version;
        _versions[projectId][version] = Version({manifestCid: manifestCid, sourceCommit: sourceCommit, deployedAt: uint64(block.timestamp)});
        emit VersionDeployed(projectId, version, manifestCid, sourceCommit);
        emit VersionActivated(projectId, version, previous);
    }

    /// @inheritdoc IFunctionRegistry
    function rollback(bytes32 projectId, uint32 version) external {
        Project storage p = _ownedProject(projectId);
        if (version == 0 || version > p.count) revert RegistryUnknownVersion(projectId, version);
        uint32 previous = p.active;
        if (version == previous) revert RegistryVersionAlreadyActive(projectId, version);
        p.active = version;
        emit VersionActivated(projectId, version, previous);
    }

    /// @inheritdoc IFunctionRegistry
    function transferProject(bytes32 projectId, address newOwner) external {
        Project storage p = _ownedProject(projectId);
        if (newOwner == address(0) || newOwner == p.owner) revert RegistryInvalidNewOwner(newOwner);
        p.pendingOwner = newOwner;
        emit ProjectTransferStarted(projectId, p.owner, newOwner);
    }

    /// @inheritdoc IFunctionRegistry
    function acceptProject(bytes32 projectId) external {
        Project storage p = _projects[projectId];
        if (p.owner == address(0)) revert RegistryUnknownProject(projectId);
        if (p.pendingOwner != msg.sender) revert RegistryNotPendingOwner(projectId, msg.sender);
        address previous = p.owner;
        p.owner = msg.sender;
        p.pendingOwner = address(0);
        emit ProjectTransferred(projectId, previous, msg.sender);
    }

    function ownerOf(bytes32 projectId) external view returns (address) {
        return _projects[projectId].owner;
    }

    function pendingOwnerOf(bytes32 projectId) external view returns (address) {
        return _projects[projectId].pendingOwner;
    }

    function projectOfFunction(bytes32 functionId) external view returns (bytes32) {
        return _functionProject[functionId];
    }

    /// @inheritdoc IFunctionRegistry
    function isDeterministic(bytes32 functionId) external view returns (bool) {
        return _deterministic[functionId];
    }

    function activeVersion(bytes32 projectId) external view returns (uint32) {
        return _projects[projectId].active;
    }

    function versionCount(bytes32 projectId) external view returns (uint32) {
        return _projects[projectId].count;
    }

    function getVersion(bytes32 projectId, uint32 version) external view returns (Version memory) {
        if (version == 0 || version > _projects[projectId].count) revert RegistryUnknownVersion(projectId, version);
        return _versions[projectId][version];
    }

    function _ownedProject(bytes32 projectId) private view returns (Project storage p) {
        p = _projects[projectId];
        if (p.owner == address(0)) revert RegistryUnknownProject(projectId);
        if (p.owner != msg.sender) revert RegistryNotProjectOwner(projectId, msg.sender);
    }

    /// @dev Lower-case `[a-z0-9-]`, 1–64 bytes: the same rule `protocol/` applies before hashing.
    function _checkName(string calldata name) private pure {
        bytes calldata b = bytes(name);
        if (b.length == 0 || b.length > MAX_NAME_LENGTH) revert RegistryInvalidName(name);
        for (uint256 i = 0; i < b.length; i++) {
            bytes1 c = b[i];
            if (!((c >= "a" && c <= "z") || (c >= "0" && c <= "9") || c == "-")) revert RegistryInvalidName(name);
        }
    }
}
