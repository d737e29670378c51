//! Model names to files: a path, an Ollama model name (read from Ollama's local store), a short alias of a model
//! fetched by `scripts/fetch-models.sh`, or nothing (the default model).
//!
//! The library reads no environment: the CLI fills [`ResolveOptions`] from `$OLLAMA_MODELS` and the home folder.

use std::fmt;
use std::path::{Path, PathBuf};

/// The file name of the default model, inside [`ResolveOptions::cache_dir`].
pub const DEFAULT_MODEL_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
/// The file name of the Gemma 3 270M model, inside [`ResolveOptions::cache_dir`].
pub const GEMMA3_270M_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
/// Short names that mean a file of the cache folder when Ollama has no model of that name.
pub const ALIASES: [(&str, &str); 2] = [
    ("qwen2.5-coder:0.5b", DEFAULT_MODEL_FILE),
    ("gemma3:270m", GEMMA3_270M_FILE),
];

/// Ollama's defaults for the parts of a model name that are left out.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";
/// The media type of the layer that holds the GGUF weights.
pub const MODEL_MEDIA_TYPE: &str = "application/vnd.ollama.image.model";

/// The longest name part accepted (Ollama's own limit for tags is 80).
const MAX_PART_LEN: usize = 128;
/// Manifests are small JSON files; a bigger one is not a manifest.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Where to look for models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// Ollama's model store (`$OLLAMA_MODELS`, else `~/.ollama/models`); `None` when it cannot be known.
    pub ollama_models: Option<PathBuf>,
    /// The folder `scripts/fetch-models.sh` downloads into (`~/.cache/quarrel/models`).
    pub cache_dir: PathBuf,
}

/// Why a model could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("the default model {} is missing; run scripts/fetch-models.sh to download it", path.display())]
    DefaultModelMissing { path: PathBuf },
    #[error("'{alias}' means {}, which is missing; run scripts/fetch-models.sh to download it", path.display())]
    AliasModelMissing { alias: String, path: PathBuf },
    #[error("model file {} not found", path.display())]
    FileNotFound { path: PathBuf },
    #[error("{} is not a file", path.display())]
    NotAFile { path: PathBuf },
    #[error("bad model name '{name}': {part} '{value}' {reason}")]
    BadName {
        name: String,
        part: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("'{name}' is not a file, and no Ollama model store is known to look it up in")]
    NoOllamaStore { name: String },
    #[error("no Ollama model '{name}' (no manifest at {})", path.display())]
    ManifestNotFound { name: String, path: PathBuf },
    #[error("reading Ollama manifest {}: {source}", path.display())]
    ManifestRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad Ollama manifest {}: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
    #[error("Ollama manifest {} has no model layer ({MODEL_MEDIA_TYPE}); its layers are {media_types:?}", path.display())]
    NoModelLayer { path: PathBuf, media_types: Vec<String> },
    #[error("Ollama manifest {} has a bad model digest '{digest}' (expected sha256:<64 hex digits>)", path.display())]
    BadDigest { path: PathBuf, digest: String },
    #[error("Ollama blob {} for {digest} is missing", path.display())]
    BlobNotFound { path: PathBuf, digest: String },
    #[error("Ollama blob {} has {found} bytes but its manifest says {expected}", path.display())]
    BlobSizeMismatch { path: PathBuf, expected: u64, found: u64 },
}

/// An Ollama model name with every part filled in: `host/namespace/model:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
}

impl fmt::Display for OllamaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}:{}", self.host, self.namespace, self.model, self.tag)
    }
}

impl OllamaName {
    /// Parses `model`, `model:tag`, `namespace/model[:tag]` or `host/namespace/model[:tag]`, filling in
    /// Ollama's defaults. Every part is checked so that it cannot leave the store's folders.
    pub fn parse(name: &str) -> Result<Self, ResolveError> {
        let bad = |part: &'static str, value: &str, reason: &'static str| ResolveError::BadName {
            name: name.to_owned(),
            part,
            value: value.to_owned(),
            reason,
        };
        // The tag follows the last ':' of the last path part (a host may carry a port: `host:5000/ns/m:t`).
        let (path, tag) = match name.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
            _ => (name, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [model] => (None, None, *model),
            [namespace, model] => (None, Some(*namespace), *model),
            [host, namespace, model] => (Some(*host), Some(*namespace), *model),
            _ => {
                return Err(bad(
                    "name",
                    name,
                    "has too many '/'-separated parts (at most host/namespace/model:tag)",
                ))
            }
        };
        let check = |part: &'static str, value: &str, extra: &[char]| {
            if value.is_empty() {
                return Err(bad(part, value, "is empty"));
            }
            if value == "." || value == ".." {
                return Err(bad(part, value, "is a relative path component"));
            }
            if value.len() > MAX_PART_LEN {
                return Err(bad(part, value, "is longer than 128 bytes"));
            }
            if !value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(part, value, "must start with a letter, digit or '_'"));
            }
            let allowed = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(&c);
            if !value.chars().all(allowed) {
                return Err(bad(
                    part,
                    value,
                    "may hold only ASCII letters, digits, '.', '_' and '-'",
                ));
            }
            Ok(value.to_owned())
        };
        Ok(Self {
            host: check("host", host.unwrap_or(DEFAULT_HOST), &[':'])?,
            namespace: check("namespace", namespace.unwrap_or(DEFAULT_NAMESPACE), &[])?,
            model: check("model", model, &[])?,
            tag: check("tag", tag.unwrap_or(DEFAULT_TAG), &[])?,
        })
    }

    /// `<store>/manifests/<host>/<namespace>/<model>/<tag>`.
    pub fn manifest_path(&self, store: &Path) -> PathBuf {
        store
            .join("manifests")
            .join(&self.host)
            .join(&self.namespace)
            .join(&self.model)
            .join(&self.tag)
    }

    /// The short spelling Ollama prints: `model:tag` for the default host and namespace.
    pub fn short(&self) -> String {
        if self.host == DEFAULT_HOST && self.namespace == DEFAULT_NAMESPACE {
            format!("{}:{}", self.model, self.tag)
        } else {
            self.to_string()
        }
    }
}

/// The file to load for `spec`:
/// - `None`: the default model, [`DEFAULT_MODEL_FILE`] in the cache folder;
/// - an existing file, or a path that ends in `.gguf` or starts with `/`, `./`, `../`: that file;
/// - an Ollama name: the model blob its manifest names;
/// - an alias of [`ALIASES`] with no Ollama manifest of that name: its file in the cache folder.
pub fn resolve_model(spec: Option<&str>, opts: &ResolveOptions) -> Result<PathBuf, ResolveError> {
    let Some(spec) = spec else {
        let path = opts.cache_dir.join(DEFAULT_MODEL_FILE);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ResolveError::DefaultModelMissing { path })
        };
    };
    let as_path = Path::new(spec);
    if as_path.is_file() {
        return Ok(as_path.to_owned());
    }
    if looks_like_path(spec) {
        return Err(if as_path.exists() {
            ResolveError::NotAFile {
                path: as_path.to_owned(),
            }
        } else {
            ResolveError::FileNotFound {
                path: as_path.to_owned(),
            }
        });
    }
    let name = OllamaName::parse(spec)?;
    let manifest = opts
        .ollama_models
        .as_deref()
        .map(|store| (store, name.manifest_path(store)));
    if let Some((store, manifest_path)) = &manifest {
        if manifest_path.is_file() {
            return blob_of_manifest(store, manifest_path);
        }
    }
    let short = name.short();
    if let Some((alias, file)) = ALIASES.into_iter().find(|(alias, _)| *alias == short) {
        let path = opts.cache_dir.join(file);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ResolveError::AliasModelMissing {
                alias: alias.to_owned(),
                path,
            })
        };
    }
    match manifest {
        Some((_, path)) => Err(ResolveError::ManifestNotFound {
            name: name.to_string(),
            path,
        }),
        None => Err(ResolveError::NoOllamaStore { name: spec.to_owned() }),
    }
}

/// Paths that are never Ollama names.
fn looks_like_path(spec: &str) -> bool {
    let lower = spec.to_ascii_lowercase();
    lower.ends_with(".gguf")
        || Path::new(spec).is_absolute()
        || spec.starts_with("./")
        || spec.starts_with("../")
        || spec.starts_with('~')
        || spec.contains('\\')
}

/// The manifest's parts that matter here.
#[derive(serde::Deserialize)]
struct Manifest {
    layers: Vec<Layer>,
}

#[derive(serde::Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: Option<u64>,
}

/// Reads an Ollama manifest and returns the path of its model layer's blob, checked to exist with the size the
/// manifest gives.
fn blob_of_manifest(store: &Path, manifest_path: &Path) -> Result<PathBuf, ResolveError> {
    let read_err = |source| ResolveError::ManifestRead {
        path: manifest_path.to_owned(),
        source,
    };
    let len = std::fs::metadata(manifest_path).map_err(read_err)?.len();
    if len > MAX_MANIFEST_BYTES {
        return Err(ResolveError::BadManifest {
            path: manifest_path.to_owned(),
            reason: format!("{len} bytes is too large for a manifest (at most {MAX_MANIFEST_BYTES})"),
        });
    }
    let text = std::fs::read(manifest_path).map_err(read_err)?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| ResolveError::BadManifest {
        path: manifest_path.to_owned(),
        reason: e.to_string(),
    })?;
    let Some(layer) = manifest
        .layers
        .iter()
        .find(|layer| layer.media_type == MODEL_MEDIA_TYPE)
    else {
        return Err(ResolveError::NoModelLayer {
            path: manifest_path.to_owned(),
            media_types: manifest.layers.into_iter().map(|l| l.media_type).collect(),
        });
    };
    let hex = layer
        .digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ResolveError::BadDigest {
            path: manifest_path.to_owned(),
            digest: layer.digest.clone(),
        })?;
    let blob = store.join("blobs").join(format!("sha256-{hex}"));
    let found = match std::fs::metadata(&blob) {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => {
            return Err(ResolveError::BlobNotFound {
                path: blob,
                digest: layer.digest.clone(),
            })
        }
    };
    if let Some(expected) = layer.size.filter(|&expected| expected != found) {
        return Err(ResolveError::BlobSizeMismatch {
            path: blob,
            expected,
            found,
        });
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake Ollama store and cache folder in a fresh temp dir, removed on drop.
    struct Fixture {
        root: PathBuf,
        opts: ResolveOptions,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    impl Fixture {
        fn new(tag: &str) -> Self {
            let root = std::env::temp_dir().join(format!("quarrel-resolve-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let store = root.join("ollama");
            let cache_dir = root.join("cache");
            std::fs::create_dir_all(store.join("blobs")).unwrap();
            std::fs::create_dir_all(&cache_dir).unwrap();
            Self {
                root,
                opts: ResolveOptions {
                    ollama_models: Some(store),
                    cache_dir,
                },
            }
        }

        fn store(&self) -> &Path {
            self.opts.ollama_models.as_deref().unwrap()
        }

        /// Writes a blob of `content` named after a digest made from `seed`, returning (digest, blob path).
        fn blob(&self, seed: u8, content: &[u8]) -> (String, PathBuf) {
            let hex: String = (0..32).map(|i| format!("{:02x}", seed.wrapping_add(i))).collect();
            let path = self.store().join("blobs").join(format!("sha256-{hex}"));
            std::fs::write(&path, content).unwrap();
            (format!("sha256:{hex}"), path)
        }

        /// Writes the manifest at `manifests/<rel>` (rel = host/ns/model/tag).
        fn manifest(&self, rel: &str, json: &str) -> PathBuf {
            let path = self.store().join("manifests").join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, json).unwrap();
            path
        }

        /// A realistic manifest: a config layer, the model layer, a template layer.
        fn model(&self, rel: &str, seed: u8) -> PathBuf {
            let (config_digest, _) = self.blob(seed.wrapping_add(100), b"{}");
            let content = vec![seed; 100 + seed as usize];
            let (digest, blob) = self.blob(seed, &content);
            self.manifest(
                rel,
                &format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
                    "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config_digest}","size":2}},
                    "layers":[
                      {{"mediaType":"application/vnd.ollama.image.template","digest":"{config_digest}","size":2}},
                      {{"mediaType":"application/vnd.ollama.image.model","digest":"{digest}","size":{}}}
                    ]}}"#,
                    content.len()
                ),
            );
            blob
        }

        fn resolve(&self, spec: &str) -> Result<PathBuf, ResolveError> {
            resolve_model(Some(spec), &self.opts)
        }
    }

    #[test]
    fn every_name_form_finds_its_blob() {
        let fx = Fixture::new("forms");
        let llama_latest = fx.model("registry.ollama.ai/library/llama3/latest", 1);
        let llama_8b = fx.model("registry.ollama.ai/library/llama3/8b", 2);
        let user_model = fx.model("registry.ollama.ai/alice/coder/q4", 3);
        let user_latest = fx.model("registry.ollama.ai/alice/coder/latest", 4);
        let hosted = fx.model("example.com/team/tiny/v1", 5);
        let hosted_port = fx.model("localhost:5000/team/tiny/latest", 6);
        for (spec, blob) in [
            ("llama3", &llama_latest),
            ("llama3:latest", &llama_latest),
            ("llama3:8b", &llama_8b),
            ("library/llama3:8b", &llama_8b),
            ("registry.ollama.ai/library/llama3:8b", &llama_8b),
            ("alice/coder:q4", &user_model),
            ("alice/coder", &user_latest),
            ("example.com/team/tiny:v1", &hosted),
            ("localhost:5000/team/tiny", &hosted_port),
        ] {
            assert_eq!(&fx.resolve(spec).unwrap(), blob, "{spec}");
        }
        // Distinct blobs: the checks above cannot pass by all pointing at one file.
        assert_ne!(llama_latest, llama_8b);
    }

    #[test]
    fn names_parse_with_ollama_defaults() {
        let name = OllamaName::parse("qwen2.5-coder:0.5b").unwrap();
        assert_eq!(
            (
                name.host.as_str(),
                name.namespace.as_str(),
                name.model.as_str(),
                name.tag.as_str()
            ),
            ("registry.ollama.ai", "library", "qwen2.5-coder", "0.5b")
        );
        assert_eq!(name.short(), "qwen2.5-coder:0.5b");
        let name = OllamaName::parse("h:1/ns/m").unwrap();
        assert_eq!((name.host.as_str(), name.tag.as_str()), ("h:1", "latest"));
        assert_eq!(name.to_string(), "h:1/ns/m:latest");
    }

    #[test]
    fn bad_names_name_the_bad_part() {
        let fx = Fixture::new("badnames");
        for (spec, part, value) in [
            ("../etc/passwd", "", ""), // path-like: a missing file, not a name
            ("a/../b", "namespace", ".."),
            ("ns/..:x", "model", ".."),
            ("model:..", "tag", ".."),
            ("a/b/c/d", "name", "a/b/c/d"),
            ("", "model", ""),
            ("llama3:", "tag", ""),
            ("/llama3", "", ""), // absolute path
            ("ns//m", "", ""),
            ("mo del", "model", "mo del"),
            ("m:t$g", "tag", "t$g"),
            ("-m", "model", "-m"),
            ("h@st/ns/m", "host", "h@st"),
        ] {
            match fx.resolve(spec) {
                Err(ResolveError::BadName {
                    part: got_part,
                    value: got_value,
                    ..
                }) if !part.is_empty() => {
                    assert_eq!((got_part, got_value.as_str()), (part, value), "{spec}");
                }
                Err(ResolveError::FileNotFound { .. } | ResolveError::BadName { .. }) if part.is_empty() => {}
                other => panic!("{spec}: {other:?}"),
            }
        }
        let long = "m".repeat(129);
        assert!(matches!(
            fx.resolve(&long),
            Err(ResolveError::BadName { part: "model", .. })
        ));
    }

    #[test]
    fn paths_resolve_to_themselves_or_fail_with_the_path() {
        let fx = Fixture::new("paths");
        let file = fx.root.join("some model.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let spec = file.to_str().unwrap();
        assert_eq!(fx.resolve(spec).unwrap(), file);
        // An existing file without the .gguf ending is taken as a file too.
        let bin = fx.root.join("weights.bin");
        std::fs::write(&bin, b"GGUF").unwrap();
        assert_eq!(fx.resolve(bin.to_str().unwrap()).unwrap(), bin);

        let missing = fx.root.join("missing.gguf");
        match fx.resolve(missing.to_str().unwrap()) {
            Err(ResolveError::FileNotFound { path }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
        match fx.resolve("relative/missing.GGUF") {
            Err(ResolveError::FileNotFound { path }) => {
                assert_eq!(path, Path::new("relative/missing.GGUF"))
            }
            other => panic!("{other:?}"),
        }
        let dir = fx.root.join("dir.gguf");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(fx.resolve(dir.to_str().unwrap()), Err(ResolveError::NotAFile { path }) if path == dir));
    }

    #[test]
    fn default_model_and_aliases_come_from_the_cache() {
        let fx = Fixture::new("default");
        let default = fx.opts.cache_dir.join(DEFAULT_MODEL_FILE);
        match resolve_model(None, &fx.opts) {
            Err(e @ ResolveError::DefaultModelMissing { .. }) => {
                let message = e.to_string();
                assert!(message.contains("scripts/fetch-models.sh"), "{message}");
                assert!(message.contains(DEFAULT_MODEL_FILE), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            fx.resolve("gemma3:270m"),
            Err(ResolveError::AliasModelMissing { path, .. }) if path == fx.opts.cache_dir.join(GEMMA3_270M_FILE)
        ));
        std::fs::write(&default, b"GGUF").unwrap();
        std::fs::write(fx.opts.cache_dir.join(GEMMA3_270M_FILE), b"GGUF").unwrap();
        assert_eq!(resolve_model(None, &fx.opts).unwrap(), default);
        assert_eq!(fx.resolve("qwen2.5-coder:0.5b").unwrap(), default);
        assert_eq!(
            fx.resolve("gemma3:270m").unwrap(),
            fx.opts.cache_dir.join(GEMMA3_270M_FILE)
        );
        // Aliases work without any Ollama store…
        let no_store = ResolveOptions {
            ollama_models: None,
            ..fx.opts.clone()
        };
        assert_eq!(
            resolve_model(Some("gemma3:270m"), &no_store).unwrap(),
            fx.opts.cache_dir.join(GEMMA3_270M_FILE)
        );
        assert!(matches!(
            resolve_model(Some("llama3"), &no_store),
            Err(ResolveError::NoOllamaStore { name }) if name == "llama3"
        ));
        // …and give way to a real Ollama model of the same name.
        let blob = fx.model("registry.ollama.ai/library/gemma3/270m", 9);
        assert_eq!(fx.resolve("gemma3:270m").unwrap(), blob);
    }

    #[test]
    fn each_store_problem_has_its_own_error() {
        let fx = Fixture::new("errors");
        match fx.resolve("nosuch:1b") {
            Err(ResolveError::ManifestNotFound { name, path }) => {
                assert_eq!(name, "registry.ollama.ai/library/nosuch:1b");
                assert_eq!(path, fx.store().join("manifests/registry.ollama.ai/library/nosuch/1b"));
            }
            other => panic!("{other:?}"),
        }

        let bad_json = fx.manifest("registry.ollama.ai/library/badjson/latest", "{ not json");
        assert!(matches!(fx.resolve("badjson"), Err(ResolveError::BadManifest { path, .. }) if path == bad_json));
        let no_layers = fx.manifest("registry.ollama.ai/library/nolayers/latest", r#"{"config":{}}"#);
        assert!(matches!(fx.resolve("nolayers"), Err(ResolveError::BadManifest { path, .. }) if path == no_layers));

        let (digest, _) = fx.blob(40, b"{{}}");
        let no_model = fx.manifest(
            "registry.ollama.ai/library/nomodel/latest",
            &format!(
                r#"{{"layers":[{{"mediaType":"application/vnd.ollama.image.license","digest":"{digest}","size":4}}]}}"#
            ),
        );
        match fx.resolve("nomodel") {
            Err(ResolveError::NoModelLayer { path, media_types }) => {
                assert_eq!(path, no_model);
                assert_eq!(media_types, ["application/vnd.ollama.image.license"]);
            }
            other => panic!("{other:?}"),
        }

        for (model, digest) in [
            ("traversal", "sha256:../../../../etc/passwd"),
            ("shortdigest", "sha256:abcd"),
            ("md5", "md5:0123456789abcdef0123456789abcdef"),
        ] {
            fx.manifest(
                &format!("registry.ollama.ai/library/{model}/latest"),
                &format!(r#"{{"layers":[{{"mediaType":"{MODEL_MEDIA_TYPE}","digest":"{digest}","size":1}}]}}"#),
            );
            match fx.resolve(model) {
                Err(ResolveError::BadDigest { digest: got, .. }) => assert_eq!(got, digest),
                other => panic!("{model}: {other:?}"),
            }
        }

        let missing_hex = "ab".repeat(32);
        fx.manifest(
            "registry.ollama.ai/library/noblob/latest",
            &format!(r#"{{"layers":[{{"mediaType":"{MODEL_MEDIA_TYPE}","digest":"sha256:{missing_hex}","size":1}}]}}"#),
        );
        match fx.resolve("noblob") {
            Err(ResolveError::BlobNotFound { path, .. }) => {
                assert_eq!(path, fx.store().join(format!("blobs/sha256-{missing_hex}")))
            }
            other => panic!("{other:?}"),
        }

        let (digest, blob) = fx.blob(50, b"short");
        fx.manifest(
            "registry.ollama.ai/library/truncated/latest",
            &format!(r#"{{"layers":[{{"mediaType":"{MODEL_MEDIA_TYPE}","digest":"{digest}","size":1000}}]}}"#),
        );
        match fx.resolve("truncated") {
            Err(ResolveError::BlobSizeMismatch { path, expected, found }) => {
                assert_eq!((path, expected, found), (blob, 1000, 5));
            }
            other => panic!("{other:?}"),
        }
    }
}
