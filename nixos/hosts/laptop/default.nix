# laptop: the mobile workstation. The desktop role plus power management,
# Wi-Fi and hibernation (roles/laptop.nix); one NVMe drive (disk.nix).
{ ... }:
{
  imports = [
    ./hardware.nix
    ./disk.nix
    ../../modules/common.nix
    ../../modules/packages.nix
    ../../modules/roles/laptop.nix
  ];

  # Must equal the host's name in fleet.toml ([hosts.laptop]).
  networking.hostName = "laptop";

  # The release this machine was first installed with. Leave it unchanged on
  # upgrades; it only guards stateful defaults (see the NixOS manual).
  system.stateVersion = "26.05";
}
