{
  description = "The fleet's NixOS configurations (desktop, laptop, server), deployed by hbdeploy";

  inputs = {
    # The current stable NixOS release: 26.05 "Yarara" (released 2026-05-30).
    # Move to nixos-26.11 once it is released, then run `nix flake update`.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

    # Declarative partitioning, used by `disko-install` on a new machine.
    # `latest` is disko's release tag, the same one the install command in
    # docs/nixos.md runs, so the module and the installer agree.
    disko.url = "github:nix-community/disko/latest";
    disko.inputs.nixpkgs.follows = "nixpkgs";
  };

  # No flake.lock is committed yet: it could not be generated offline.
  # The first `nix flake lock` (or any build) on a networked machine writes it;
  # commit it then so every host builds from the same nixpkgs revision.

  outputs =
    { nixpkgs, disko, ... }@inputs:
    let
      # One NixOS system per host. The attribute name is the host's name in
      # fleet.toml (hbdeploy builds `nixosConfigurations.<attr>`, attr defaulting
      # to the host name), and hosts/<name>/default.nix sets the same
      # networking.hostName.
      mkHost =
        name:
        nixpkgs.lib.nixosSystem {
          # The platform comes from nixpkgs.hostPlatform in hosts/<name>/hardware.nix.
          specialArgs = { inherit inputs; };
          modules = [
            disko.nixosModules.disko
            ./hosts/${name}
          ];
        };
    in
    {
      nixosConfigurations = {
        desktop = mkHost "desktop";
        laptop = mkHost "laptop";
        server = mkHost "server";
      };
    };
}
