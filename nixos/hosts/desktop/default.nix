# desktop: the main workstation, a tower with two NVMe drives; NixOS lives
# on the second one (/dev/nvme1n1, see disk.nix). GNOME desktop.
{ ... }:
{
  imports = [
    ./hardware.nix
    ./disk.nix
    ../../modules/common.nix
    ../../modules/packages.nix
    ../../modules/roles/desktop.nix
  ];

  # Must equal the host's name in fleet.toml ([hosts.desktop]).
  networking.hostName = "desktop";

  # The release this machine was first installed with. Leave it unchanged on
  # upgrades; it only guards stateful defaults (see the NixOS manual).
  system.stateVersion = "26.05";
}
