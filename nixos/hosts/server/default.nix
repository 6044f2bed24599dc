# server: the headless home server, the HTTPS reverse proxy (Caddy) for the
# home network (roles/server.nix); one SATA SSD (disk.nix).
{ ... }:
{
  imports = [
    ./hardware.nix
    ./disk.nix
    ../../modules/common.nix
    ../../modules/packages.nix
    ../../modules/roles/server.nix
  ];

  # Must equal the host's name in fleet.toml ([hosts.server]).
  networking.hostName = "server";

  # The release this machine was first installed with. Leave it unchanged on
  # upgrades; it only guards stateful defaults (see the NixOS manual).
  system.stateVersion = "26.05";
}
