// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice Test-only attacker: forwards calls to a target and, when paid, calls the target again
/// (reentrancy through a malicious receiver). Records whether the re-entry succeeded.
contract ReentrantReceiver {
    error PaymentRejected();

    address public target;
    bytes public reentryCall;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;
    bool public rejectPayments;

    function setTarget(address target_, bytes calldata reentryCall_) external {
        target = target_;
        reentryCall = reentryCall_;
    }

    function setRejectPayments(bool reject) external {
        rejectPayments = reject;
    }

    function execute(address to, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call{value: value}(data);
        if (!ok) {
            assembly { revert(add(ret, 32), mload(ret)) }
        }
        return ret;
    }

    receive() external payable {
        if (rejectPayments) revert PaymentRejected();
        if (reentryAttempts == 0 && target != address(0)) {
            reentryAttempts = 1;
            (bool ok,) = target.call(reentryCall);
            reentrySucceeded = ok;
        }
    }
}
