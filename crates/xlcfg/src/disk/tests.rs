use std::path::Path;

use super::*;
use crate::testutil::{fails, load, load_err, parses, BASE};
use crate::DomainConfig;

fn disk(spec: &str) -> DiskSpec {
    parses(parse_disk_spec, spec)
}

fn err(spec: &str) -> String {
    fails(parse_disk_spec, spec)
}

#[test]
fn the_man_pages_equivalent_forms_agree() {
    let want = disk("/dev/vg/guest-volume,raw,hda,rw");
    assert_eq!(want.target, Path::new("/dev/vg/guest-volume"));
    assert_eq!(
        (want.format, want.vdev.as_str(), want.devid),
        (DiskFormat::Raw, "hda", 768)
    );
    assert!(!want.readonly && !want.cdrom);
    for spec in [
        "/dev/vg/guest-volume,,hda",
        "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
        "raw:/dev/vg/guest-volume,hda,w",
    ] {
        assert_eq!(disk(spec), want, "{spec}");
    }
    let cd = disk("/root/image.iso,,hdc,cdrom");
    assert!(cd.cdrom && cd.readonly);
    assert_eq!((cd.devid, cd.format), (22 << 8, DiskFormat::Raw));
    for spec in [
        "/root/image.iso,,hdc,,cdrom",
        "/root/image.iso,raw,hdc,devtype=cdrom",
        "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
        "raw:/root/image.iso,hdc:cdrom,ro",
    ] {
        assert_eq!(disk(spec), cd, "{spec}");
    }
}

#[test]
fn positional_form() {
    let d = disk("/img.raw,raw,xvda,rw");
    assert_eq!(
        (d.target.as_path(), d.devid),
        (Path::new("/img.raw"), 51712)
    );
    assert!(!d.readonly);
    let d = disk("/img.raw,vhd,xvdb,r");
    assert_eq!(
        (d.format, d.devid, d.readonly),
        (DiskFormat::Vhd, 51728, true)
    );
    assert!(disk("/a,,xvda,ro").readonly);
    assert!(!disk("/a,,xvda,w").readonly);
    // Named parameters take their place out of the positional order.
    let d = disk("format=vhd,/img,xvdc");
    assert_eq!((d.format, d.vdev.as_str()), (DiskFormat::Vhd, "xvdc"));
    let d = disk("vdev=xvdc,/img,raw,r");
    assert_eq!((d.vdev.as_str(), d.readonly), ("xvdc", true));
    // An empty positional target may be completed by `target=`.
    assert_eq!(disk(",,xvda,target=/x").target, Path::new("/x"));
}

#[test]
fn format_defaults_to_raw_or_vhd_by_extension() {
    assert_eq!(disk("/a/b.img,,xvda").format, DiskFormat::Raw);
    assert_eq!(disk("/a/b.vhd,,xvda").format, DiskFormat::Vhd);
    assert_eq!(disk("/a/b.VHD,,xvda").format, DiskFormat::Vhd);
    assert_eq!(disk("/a/b.vhd,raw,xvda").format, DiskFormat::Raw);
    assert_eq!(disk("vdev=xvda,target=/a/b.vhd").format, DiskFormat::Vhd);
}

#[test]
fn legacy_prefixes() {
    let d = disk("phy:/dev/vg/lv,xvda,w");
    assert_eq!(
        (d.target.as_path(), d.vdev.as_str()),
        (Path::new("/dev/vg/lv"), "xvda")
    );
    assert_eq!((d.format, d.readonly), (DiskFormat::Raw, false));
    // A relative phy target is a device under /dev, as xl's block script reads it.
    assert_eq!(disk("phy:vg/lv,xvda,w").target, Path::new("/dev/vg/lv"));
    assert_eq!(
        disk("backendtype=phy,vg/lv,,xvda").target,
        Path::new("/dev/vg/lv")
    );
    assert_eq!(disk("file:rel.img,xvda,w").target, Path::new("rel.img"));
    let d = disk("file:/img,hda,r");
    assert_eq!(
        (d.target.as_path(), d.devid, d.readonly),
        (Path::new("/img"), 768, true)
    );
    let d = disk("tap:aio:/i.vhd,xvdb,w");
    assert_eq!(
        (d.target.as_path(), d.format),
        (Path::new("/i.vhd"), DiskFormat::Vhd)
    );
    let d = disk("tap:vhd:/i.img,xvdb,w");
    assert_eq!(
        (d.target.as_path(), d.format),
        (Path::new("/i.img"), DiskFormat::Vhd)
    );
    assert_eq!(disk("vhd:/i.img,xvda,w").format, DiskFormat::Vhd);
    assert_eq!(disk("tap2:tapdisk:aio:/i,xvda,w").target, Path::new("/i"));
    assert!(disk("file:/cd.iso,xvdd:cdrom,r").cdrom);
    assert!(!disk("file:/d,xvdd:disk,w").cdrom);
    // xend's order without a prefix: the second parameter is a vdev, never a format.
    let d = disk("/img,xvda,r");
    assert_eq!(
        (d.vdev.as_str(), d.readonly, d.format),
        ("xvda", true, DiskFormat::Raw)
    );
}

#[test]
fn key_value_form_and_target_taking_the_rest() {
    let d = disk("format=vhd,vdev=xvda,access=rw,target=/path/a,b=c, d.vhd,");
    assert_eq!(d.target, Path::new("/path/a,b=c, d.vhd"));
    assert_eq!(
        (d.format, d.devid, d.readonly),
        (DiskFormat::Vhd, 51712, false)
    );
    let d = disk(
        " vdev=xvdb , devtype=disk, backendtype=qdisk, backend=0, specification=xen, \
                 direct-io-safe, no-discard, trusted, script=, target=/t",
    );
    assert!(d.direct_io_safe && !d.discard && !d.cdrom);
    assert_eq!(d.devid, 51728);
    assert!(disk("discard,no-discard,discard,/t,,xvda").discard);
    assert!(disk("backendtype=tap,/t,,xvda").target == Path::new("/t"));
}

#[test]
fn oxen_extensions_and_defaults() {
    let d = disk("/t,,xvda");
    assert!(
        d.discard && !d.persistent_grants && !d.direct_io_safe,
        "persistent grants are opt-in"
    );
    assert_eq!((d.key, d.queues, d.ring_page_order), (None, None, None));
    let d = disk(
        "key=/etc/oxen/k.key,queues=4,ring-page-order=2,persistent-grants,no-persistent-grants,\
                  format=vhd,vdev=xvda,target=/enc.vhd",
    );
    assert_eq!(d.key.as_deref(), Some(Path::new("/etc/oxen/k.key")));
    assert_eq!((d.queues, d.ring_page_order), (Some(4), Some(2)));
    assert!(!d.persistent_grants);
    assert!(disk("persistent-grants,/t,,xvda").persistent_grants);
    assert_eq!(
        disk("queues=16,ring-page-order=0,/t,,xvda").queues,
        Some(16)
    );
    assert_eq!(disk("key=,/t,,xvda").key, None);
}

#[test]
fn error_messages() {
    assert_eq!(
        err("/t,,xvda,rw,formt=raw"),
        "unknown disk parameter 'formt' (did you mean 'format'?)"
    );
    assert_eq!(
        err("/t,,xvda,rw,colour=red"),
        "unknown disk parameter 'colour'"
    );
    assert_eq!(err("vdev=xvda"), "no target (image or device path) given");
    assert_eq!(err(",,xvda"), "no target (image or device path) given");
    assert_eq!(err("/t"), "no vdev (guest device name such as xvda) given");
    assert_eq!(
        err("/t,raw,,rw"),
        "no vdev (guest device name such as xvda) given"
    );
    assert_eq!(
        err("/t,,xvda,rx"),
        "'rx' is not an access mode (r, ro, w, rw)"
    );
    assert_eq!(
        err("access=write,/t,,xvda"),
        "'write' is not an access mode (r, ro, w, rw)"
    );
    assert_eq!(
        err("/t,,vda"),
        "'vda' is not a virtual device name (such as xvda, xvdb1, hda, sda, d0p1)"
    );
    assert_eq!(
        err("/t,qcow2,xvda"),
        "format 'qcow2' is not supported by Oxen (raw, vhd)"
    );
    assert_eq!(
        err("format=qcow2,vdev=xvda,target=/t"),
        "format 'qcow2' is not supported by Oxen (raw, vhd)"
    );
    assert!(err("qcow2:/t,xvda,w").contains("'qcow2' is not supported"));
    assert!(err("/t,qed,xvda").contains("'qed' is not supported"));
    assert_eq!(
        err("/t,vdh,xvda"),
        "'vdh' is not a disk format (raw, vhd) (did you mean 'vhd'?)"
    );
    assert_eq!(
        err("/t,tiff,xvda"),
        "'tiff' is not a disk format (raw, vhd)"
    );
    assert_eq!(
        err("/t,raw,xvda,rw,extra"),
        "too many positional parameters at 'extra' (target, format, vdev, access)"
    );
    assert!(err("/t,raw,xvda,rw,dicard").ends_with("(did you mean 'discard'?)"));
    assert_eq!(
        err("vdev=xvda,vdev=xvdb,target=/t"),
        "'vdev' is given twice"
    );
    assert_eq!(err("/t,,xvda,target=/u"), "'target' is given twice");
    assert_eq!(err("vhd:/t,xvda,w,format=raw"), "'format' is given twice");
    assert!(err("script=block-iscsi,vdev=xvda,target=iqn")
        .starts_with("block scripts are not supported by Oxen"));
    assert!(err("nbd:host:1,xvda,w").starts_with("block scripts are not supported"));
    assert_eq!(
        err(",hdc:cdrom,r"),
        "an empty cdrom drive (no target) is not supported by Oxen"
    );
    assert_eq!(
        err("/cd.iso,,hdc,w,cdrom"),
        "a cdrom is read-only: access must be r or ro"
    );
    assert_eq!(
        err("devtype=floppy,/t,,xvda"),
        "'floppy' is not a devtype (disk, cdrom)"
    );
    assert_eq!(
        err("/t,,xvda:tape"),
        "unknown deprecated device type 'tape'"
    );
    assert!(err("backend=dd,/t,,xvda").contains("driver domains are not supported"));
    assert!(err("backendtype=standalone,/t,,xvda").contains("not supported"));
    assert_eq!(
        err("backendtype=fast,/t,,xvda"),
        "'fast' is not a backendtype (phy, tap, qdisk)"
    );
    assert!(err("specification=virtio,/t,,xvda").contains("virtio"));
    assert_eq!(
        err("queues=0,/t,,xvda"),
        "'queues': 0 is out of range (1 to 16)"
    );
    assert_eq!(
        err("queues=17,/t,,xvda"),
        "'queues': 17 is out of range (1 to 16)"
    );
    assert_eq!(
        err("ring-page-order=5,/t,,xvda"),
        "'ring-page-order': 5 is out of range (0 to 4)"
    );
    assert!(err("ring-page-order=x,/t,,xvda").contains("'x' is not a number"));
    assert!(err("colo,/t,,xvda").contains("COLO"));
    assert!(err("colo-host=h,/t,,xvda").contains("COLO"));
    assert_eq!(
        err("weird:/t,xvda,w"),
        "unknown deprecated disk prefix 'weird:'"
    );
    assert_eq!(
        err("/a=b,,xvda"),
        "'/a=b': a target containing '=' must come last, as target=PATH"
    );
}

#[test]
fn never_panics_on_odd_specs() {
    for spec in [
        "", ",", ",,,,,", "=", "a=", "=b", "target=", ":", "phy:", "tap:aio:", "::::", "xvda:",
        "\u{0}",
    ] {
        let _ = parse_disk_spec(spec);
    }
}

#[test]
fn domain_config_gets_the_disk_list() {
    let c = load(
        "disk = [ 'phy:/dev/vg/root,xvda,w',\n  '/srv/data.vhd,,xvdb,r',\n  'vdev=xvdc,devtype=cdrom,target=/iso' ]\n",
    )
    .unwrap();
    let ids: Vec<u32> = c.disks.iter().map(|d| d.devid).collect();
    assert_eq!(ids, [51712, 51728, 51744]);
    assert_eq!(c.disks[1].format, DiskFormat::Vhd);
    assert!(c.disks[2].cdrom && c.disks[2].readonly);
    assert!(load("").unwrap().disks.is_empty());
    assert!(load("disk = []").unwrap().disks.is_empty());
    // A later `disk` replaces the list; `+=` extends it.
    let c = load("disk=['/a,,xvda']\ndisk=['/b,,xvdb']").unwrap();
    assert_eq!(c.disks.len(), 1);
    let c = load("disk=['/a,,xvda']\ndisk+=['/b,,xvdb']").unwrap();
    assert_eq!(c.disks.len(), 2);
}

#[test]
fn domain_errors_name_file_line_key_and_index() {
    assert_eq!(load_err("disk = [ '/a,,xvda',\n '/b,raw,xvdb,rw,frmat=raw' ]"),
        "d.cfg:3: 'disk': disk 1 ('/b,raw,xvdb,rw,frmat=raw'): unknown disk parameter 'frmat' (did you mean 'format'?)"
    );
    assert_eq!(
        load_err("\ndisk = [ '/a,,xvda', '/b,,xvda' ]"),
        "d.cfg:4: 'disk': disk 1 ('/b,,xvda'): vdev 'xvda' is already used by disk 0"
    );
    assert_eq!(
        load_err("disk = [ '/a,,xvda', '/b,,d0p0' ]"),
        "d.cfg:3: 'disk': disk 1 ('/b,,d0p0'): vdev 'd0p0' is the same device as 'xvda' of disk 0"
    );
    let e = load_err("disk = [ '/a,,xvdA' ]");
    assert!(
        e.starts_with("d.cfg:3: 'disk': disk 0 ('/a,,xvdA'): 'xvdA' is not a virtual device name"),
        "{e}"
    );
    let e = load_err("disk = [ '/a,,xvda,rw,cdrom' ]");
    assert!(
        e.contains("disk 0 ('/a,,xvda,rw,cdrom'): a cdrom is read-only"),
        "{e}"
    );
    assert_eq!(
        load_err("disk = '/a,,xvda'"),
        "d.cfg:3: 'disk': expected a list of strings, found a string"
    );
    assert_eq!(
        load_err("disk = [ '/a,,xvda', 3 ]"),
        "d.cfg:3: 'disk': item 1 is a number, expected a string"
    );
    assert_eq!(
        load_err("dsik = [ '/a,,xvda' ]"),
        "d.cfg:3: 'dsik': unknown setting (did you mean 'disk'?)"
    );
    let e = DomainConfig::load(BASE, "d.cfg", &["disk=['/a,,xvda,x']".into()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line:1: 'disk': disk 0 ('/a,,xvda,x'): 'x' is not an access mode (r, ro, w, rw)"
    );
}
