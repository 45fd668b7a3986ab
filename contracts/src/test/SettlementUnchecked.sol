// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Settlement} from "../Settlement.sol";
import {IFunctionRegistry} from "../interfaces/IFunctionRegistry.sol";
import {IWorkerStaking} from "../interfaces/IWorkerStaking.sol";

/// @title SettlementUnchecked — TEST ONLY, deliberately broken
/// @notice Settlement without the trust-model checks of issue 9: every gateway counts as staked and
/// every function as deterministic. test/contracts/invariants.spec.ts runs its fuzz against this to
/// show that "no honest worker slashed" can fail (and so is really checked). Never deployed by
/// contracts/deploy.ts or Ignition.
contract SettlementUnchecked is Settlement {
    constructor(IFunctionRegistry registry_, IWorkerStaking staking_, Params memory p) Settlement(registry_, staking_, p) {}

    function _gatewayStaked(address) internal pure override returns (bool) {
        return true;
    }

    function _deterministic(bytes32) internal pure override returns (bool) {
        return true;
    }
}
