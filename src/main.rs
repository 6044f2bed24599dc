//! hbdeploy: push-model NixOS fleet deployer.
fn main() {}
