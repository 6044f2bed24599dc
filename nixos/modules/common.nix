# Shared by every host: Nix settings a deployer needs, SSH, firewall, boot
# loader, time zone and locale, garbage collection and the normal user.
# A change here reaches the whole fleet with `hbdeploy apply --all`.
{ config, lib, ... }:
let
  # ────────────────────────────────────────────────────────────────────────
  # THE deployer SSH key. This is the one place to put it.
  #
  # hbdeploy connects as root (fleet.toml: [ssh] user = "root"), so these keys
  # go to root's authorized_keys on every host; alice gets them too so you can
  # log in as yourself. REPLACE the placeholder below with your public key
  # (the output of `cat ~/.ssh/id_ed25519.pub`); add one string per key.
  #
  # Until you do, every host fails to evaluate (see `assertions` below) rather
  # than installing or deploying a machine nobody can log in to over SSH.
  # ────────────────────────────────────────────────────────────────────────
  deployerKeys = [
    "ssh-ed25519 REPLACE-ME-with-the-deployer-public-key hbdeploy-placeholder"
  ];
in
{
  # Magic rollback that also covers a reboot: services.hbdeploy.magicRollback (on by default).
  imports = [ ./hbdeploy ];

  assertions = [
    {
      assertion = !(lib.any (key: lib.hasInfix "REPLACE-ME" key) deployerKeys);
      message = ''
        nixos/modules/common.nix still holds the placeholder deployer SSH key.
        Replace it with your real public key (cat ~/.ssh/id_ed25519.pub) before
        installing or deploying: otherwise hbdeploy, which logs in as root with
        that key, is locked out of the host after the next activation.
      '';
    }
  ];

  # ── Nix ────────────────────────────────────────────────────────────────
  nix.settings = {
    experimental-features = [
      "nix-command"
      "flakes"
    ];

    # hbdeploy copies each closure with `nix copy --to ssh-ng://root@<host>`.
    # The remote side runs as root, which is trusted, so it may copy paths
    # that carry no signature when the copy is made with `--no-check-sigs`.
    # Only root: a trusted user is root-equivalent, so wheel is NOT trusted.
    trusted-users = [ "root" ];

    # Optional, instead of `--no-check-sigs`: sign the closure with a deployer
    # key (`nix store sign --key-file ...`) and let hosts accept that key.
    # `extra-` keeps cache.nixos.org's key, which a plain
    # `trusted-public-keys = [ ... ]` would replace. See docs/nixos.md.
    # extra-trusted-public-keys = [ "hbdeploy-1:REPLACE-with-the-public-key=" ];
  };

  # Deduplicate the store in the background instead of on every build.
  nix.optimise.automatic = true;

  # Automatic GC, keeping enough for rollback: system generations younger
  # than 30 days survive (and so do their store paths), and the boot menu
  # lists the newest 20 (boot.loader.systemd-boot.configurationLimit below).
  nix.gc = {
    automatic = true;
    dates = "weekly";
    options = "--delete-older-than 30d";
  };

  # ── Boot ───────────────────────────────────────────────────────────────
  # Every host boots UEFI with systemd-boot from the vfat ESP mounted at
  # /boot (see hosts/<name>/disk.nix).
  boot.loader.systemd-boot.enable = true;
  boot.loader.systemd-boot.configurationLimit = 20;
  # disko-install overrides this to false unless run with
  # --write-efi-boot-entries; on a booted host it keeps the NVRAM entry right.
  boot.loader.efi.canTouchEfiVariables = true;

  # CPU microcode and Wi-Fi/GPU firmware (hardware.nix reads this flag).
  hardware.enableRedistributableFirmware = true;

  # ── SSH: keys only ─────────────────────────────────────────────────────
  services.openssh = {
    enable = true;
    ports = [ 22 ]; # fleet.toml: [ssh] port = 22
    openFirewall = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password"; # root by key only: hbdeploy
    };
  };
  users.users.root.openssh.authorizedKeys.keys = deployerKeys;

  # ── Firewall ───────────────────────────────────────────────────────────
  # On everywhere; 22 is the only port every host opens. Roles add theirs
  # (roles/server.nix opens 80 and 443).
  networking.firewall = {
    enable = true;
    allowedTCPPorts = [ 22 ];
  };

  # ── Time zone and locale ───────────────────────────────────────────────
  time.timeZone = "Europe/Berlin";
  i18n.defaultLocale = "en_US.UTF-8";
  console.keyMap = "us";

  # ── The normal user ────────────────────────────────────────────────────
  users.users.alice = {
    isNormalUser = true;
    description = "Alice";
    extraGroups = [ "wheel" ] ++ lib.optional config.networking.networkmanager.enable "networkmanager";
    openssh.authorizedKeys.keys = deployerKeys;
    # For the console and the graphical login only (SSH takes no passwords).
    # Set at account creation; change it with `passwd` at the first login:
    # users stay mutable, so the new password is kept across deploys.
    initialPassword = "change-me";
  };
  security.sudo.wheelNeedsPassword = true;
}
