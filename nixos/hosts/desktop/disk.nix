# desktop's disk, partitioned by disko (at install time, by disko-install).
#
# The attribute name under disko.devices.disk, `nvme1n1`, is the NAME in
#   disko-install ... --flake .#desktop --disk nvme1n1 /dev/nvme1n1
# disko-install wants one `--disk NAME DEVICE` for every disk declared here
# and puts DEVICE in place of `device` below. The name is also baked into the
# partition labels (disk-nvme1n1-ESP, disk-nvme1n1-root) that the installed
# system mounts by, so do not rename it after installing.
#
# Layout: GPT; a 1 GiB EFI system partition (vfat, /boot) for systemd-boot,
# big enough for the 20 boot entries common.nix keeps; the rest is btrfs.
#
# Why btrfs with subvolumes rather than ext4: /, /home, /nix and /var/log are
# separate subvolumes that share the free space, so no partition size has to
# be guessed up front; zstd compression roughly halves /nix/store; checksums
# plus the monthly scrub below catch silent corruption; and /home can be
# snapshotted (`btrfs subvolume snapshot`) where NixOS generations only roll
# back the system, not the data.
#
# Swap: a 16 GiB swap file on its own subvolume (disko creates it No-COW, as
# btrfs requires). The desktop never hibernates, so no swap partition; a file
# can be resized later without repartitioning.
{
  disko.devices.disk.nvme1n1 = {
    type = "disk";
    device = "/dev/nvme1n1";
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
              "/swap" = {
                mountpoint = "/.swapvol";
                swap.swapfile.size = "16G";
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
