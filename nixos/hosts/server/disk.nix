# server's disk, partitioned by disko (at install time, by disko-install).
#
# The attribute name under disko.devices.disk, `sda`, is the NAME in
#   disko-install ... --flake .#server --disk sda /dev/sda
# disko-install wants one `--disk NAME DEVICE` for every disk declared here
# and puts DEVICE in place of `device` below (pass the real device, even if
# it is not sda). The name is also baked into the partition labels
# (disk-sda-ESP, disk-sda-root) that the installed system mounts by, so do
# not rename it after installing.
#
# Layout: GPT; a 1 GiB EFI system partition (vfat, /boot) for systemd-boot;
# the rest is btrfs with subvolumes (why btrfs: see hosts/desktop/disk.nix and
# docs/nixos.md). Service state (/var/lib: Caddy's certificates and CA) gets
# its own subvolume so it can be snapshotted and backed up on its own.
{
  disko.devices.disk.sda = {
    type = "disk";
    device = "/dev/sda";
    content = {
      type = "gpt";
      partitions = {
        ESP = {
          priority = 1; # first on the disk
          size = "1G";
          type = "EF00";
          content = {
            type = "filesystem";
            format = "vfat";
            mountpoint = "/boot";
            mountOptions = [ "umask=0077" ];
          };
        };
        root = {
          size = "100%";
          content = {
            type = "btrfs";
            extraArgs = [ "-f" ]; # overwrite whatever file system was there
            subvolumes = {
              "/rootfs" = {
                mountpoint = "/";
                mountOptions = [ "compress=zstd" "noatime" ];
              };
              "/home" = {
                mountpoint = "/home";
                mountOptions = [ "compress=zstd" "noatime" ];
              };
              "/nix" = {
                mountpoint = "/nix";
                mountOptions = [ "compress=zstd" "noatime" ];
              };
              "/log" = {
                mountpoint = "/var/log";
                mountOptions = [ "compress=zstd" "noatime" ];
              };
              "/state" = {
                mountpoint = "/var/lib";
                mountOptions = [ "compress=zstd" "noatime" ];
              };
            };
          };
        };
      };
    };
  };

  # Swap: none on disk. The server runs a small, steady set of services and
  # never hibernates; compressed swap in RAM absorbs the odd peak without
  # writing to the SSD. If it ever needs disk swap, add a "/swap" subvolume
  # with a swap file as hosts/desktop/disk.nix does.
  zramSwap.enable = true;

  services.btrfs.autoScrub = {
    enable = true;
    interval = "monthly";
    fileSystems = [ "/" ];
  };
}
