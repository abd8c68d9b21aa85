//! Static files from one directory: GET and HEAD, `index.html` for directories, content types
//! by extension, and no way out of the directory (`..`, encoded separators, symlinks leading
//! outside are all refused).

use std::path::{Path, PathBuf};

/// The content type for a file name's extension.
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("wasm") => "application/wasm",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("ts") => "text/plain; charset=utf-8", // .d.ts next to the package, not MPEG-TS
        _ => "application/octet-stream",
    }
}

/// Percent-decodes a URL path; `None` if the encoding is broken or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Maps a request path to a file path under `root`, refusing anything that could leave it.
pub(crate) fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    let mut path = root.to_path_buf();
    for seg in decoded.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg == ".." || seg.contains(['\\', '\0', ':']) || seg.starts_with('.') {
            return None; // no traversal, no Windows separators or drives, no dotfiles
        }
        path.push(seg);
    }
    Some(path)
}

/// Reads the file for `url_path`: `Ok(Some((bytes, content type)))`, or `Ok(None)` if there is
/// no such file inside `root`.
pub(crate) async fn load(root: &Path, url_path: &str) -> std::io::Result<Option<(Vec<u8>, &'static str)>> {
    let Some(mut path) = resolve(root, url_path) else { return Ok(None) };
    let Ok(meta) = tokio::fs::metadata(&path).await else { return Ok(None) };
    if meta.is_dir() {
        path.push("index.html");
    }
    // Symlinks are followed only if they stay inside the root.
    let (Ok(real), Ok(real_root)) = (tokio::fs::canonicalize(&path).await, tokio::fs::canonicalize(root).await) else {
        return Ok(None);
    };
    if !real.starts_with(&real_root) || !tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let bytes = tokio::fs::read(&real).await?;
    Ok(Some((bytes, content_type(&real))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("a/pkg_bg.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("x.mjs")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("x.JS")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("LICENSE")), "application/octet-stream");
    }

    #[test]
    fn traversal_is_refused() {
        let root = Path::new("/srv/www");
        assert_eq!(resolve(root, "/a/b.js"), Some(PathBuf::from("/srv/www/a/b.js")));
        assert_eq!(resolve(root, "/a%20b.js"), Some(PathBuf::from("/srv/www/a b.js")));
        assert_eq!(resolve(root, "//a/./b"), Some(PathBuf::from("/srv/www/a/b")));
        for bad in
            ["/../etc/passwd", "/a/%2e%2e/%2e%2e/x", "/a%2f..%2f..%2fx", "/..%5cx", "/.git/config", "/%zz", "/%c3"]
        {
            assert_eq!(resolve(root, bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn loads_files_and_indexes_but_not_outside_links() {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::write(www.join("sub/index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), www.join("link.txt")).unwrap();
        let (body, ct) = load(&www, "/sub/").await.unwrap().unwrap();
        assert_eq!((body.as_slice(), ct), (&b"<p>hi</p>"[..], "text/html; charset=utf-8"));
        assert!(load(&www, "/link.txt").await.unwrap().is_none());
        assert!(load(&www, "/missing.js").await.unwrap().is_none());
        assert!(load(&www, "/").await.unwrap().is_none());
    }
}
