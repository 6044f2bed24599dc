# laptop's disk, partitioned by disko (at install time, by disko-install).
#
# The attribute name under disko.devices.disk, `nvme0n1`, is the NAME in
#   disko-install ... --flake .#laptop --disk nvme0n1 /dev/nvme0n1
# disko-install wants one `--disk NAME DEVICE` for every disk declared here
# and puts DEVICE in place of `device` below. The name is also baked into the
# partition labels (disk-nvme0n1-ESP, -swap, -root) that the installed system
# mounts by, so do not rename it after installing.
#
# Layout: GPT; a 1 GiB EFI system partition (vfat, /boot) for systemd-boot;
# a swap partition; the rest is btrfs with subvolumes (why btrfs: see
# hosts/desktop/disk.nix and docs/nixos.md).
#
# Swap: a partition, because the laptop hibernates (roles/laptop.nix) and
# resumes from it. Sized for hibernation: the RAM of this stand-in laptop
# (16 GiB) plus 2 GiB of headroom; with more RAM, make it RAM + 2G BEFORE
# installing (a partition cannot grow in place afterwards).
{
  disko.devices.disk.nvme0n1 = {
    type = "disk";
    device = "/dev/nvme0n1";
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
        swap = {
          size = "18G";
          content = {
            type = "swap";
            discardPolicy = "both";
            resumeDevice = true; # boot.resumeDevice: resume from hibernation here
          };
        };
        root = {
          size = "100%"; # after the swap partition: disko places 100% last
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
            };
          };
        };
      };
    };
  };

  services.btrfs.autoScrub = {
    enable = true;
    interval = "monthly";
    fileSystems = [ "/" ];
  };
}
