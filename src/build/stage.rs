//! One stage of a build: its base, then its instructions in order.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::cache::StepKey;
use super::copy;
use super::download;
use super::rootpath::{self, Missing};
use super::users::{self, Owner};
use super::{Build, Error, StepProcess};
use crate::cblockfile::ast::{
    Command, Copy, CopySource, Healthcheck, Instruction, InstructionKind, Run, Word,
};
use crate::oci::image_spec::{ContainerConfig, EmptyObject, History, ImageConfig};

/// Longest wait for an ADD URL server to connect or send more data.
const ADD_URL_TIMEOUT_SECS: u64 = 60;
/// Largest file ADD fetches from a URL.
const ADD_URL_MAX_BYTES: u64 = 16 << 30;

/// What a finished stage hands to the stages built on it and to the image.
#[derive(Debug, Clone)]
pub struct StageResult {
    /// Chain ID of the stage's top layer; `None` for an empty root.
    pub top: Option<String>,
    pub config: ImageConfig,
    pub key: StepKey,
    /// `ROOTPIVOT`: the directory that becomes the image's root.
    pub rootpivot: Option<String>,
    /// When the stage's newest layer was committed (RFC 3339), the image's
    /// creation time.
    pub created: Option<String>,
    pub cached_steps: usize,
    pub executed_steps: usize,
}

struct StageRun<'b, 'a> {
    build: &'b Build<'a>,
    index: usize,
    /// Global number of the current step, 1-based.
    step: usize,
    /// Text and line of the current instruction, for errors.
    text: String,
    line: usize,
    result: StageResult,
    /// ARG values in scope.
    args: BTreeMap<String, String>,
    /// Whether this stage set CMD, so that ENTRYPOINT keeps it.
    cmd_set: bool,
}

/// Builds stage `index`; `done` holds the stages it may read from.
pub fn run(
    build: &Build,
    index: usize,
    done: &BTreeMap<usize, StageResult>,
) -> Result<StageResult, Error> {
    let stage = &build.file.stages[index];
    let first_step = build.step_base[&index] + 1;
    let mut run = StageRun {
        build,
        index,
        step: first_step,
        text: format!("FROM {}", stage.from.image.raw),
        line: stage.position.line,
        result: StageResult {
            top: None,
            config: ImageConfig::default(),
            key: StepKey::base("scratch"),
            rootpivot: None,
            created: None,
            cached_steps: 0,
            executed_steps: 0,
        },
        args: BTreeMap::new(),
        cmd_set: false,
    };

    run.announce();
    let base = run.base(done);
    let base = base.and_then(|result| {
        run.result = result;
        run.run_triggers(done)
    });
    run.probe_done(&base);
    base.map_err(|err| run.wrap(err))?;

    for instruction in &stage.instructions {
        run.step += 1;
        run.text = instruction.text.clone();
        run.line = instruction.position.line;
        run.announce();
        let outcome = run.instruction(instruction, done);
        run.probe_done(&outcome);
        outcome.map_err(|err| run.wrap(err))?;
    }
    Ok(run.result)
}

impl StageRun<'_, '_> {
    /// Fires the build step probe for the end of the current step.
    fn probe_done<T>(&self, outcome: &Result<T, Error>) {
        let status = match outcome {
            Ok(_) => 0,
            Err(Error::StepExit { status, .. }) => *status,
            Err(_) => 1,
        };
        crate::daemon::probes::build_step_done(&self.build.id, self.step as i32, status);
    }

    fn announce(&self) {
        crate::daemon::probes::build_step_start(&self.build.id, self.step as i32, &self.text);
        if self.build.options.quiet {
            return;
        }
        self.build.say(&format!(
            "-- Step {}/{} : {}",
            self.step, self.build.total_steps, self.text
        ));
    }

    /// Gives an error the step's file position, unless it has one.
    fn wrap(&self, err: Error) -> Error {
        match err {
            Error::Step { .. } | Error::StepExit { .. } | Error::CacheMiss { .. } => err,
            other => Error::Step {
                file: self.build.file.file.clone(),
                line: self.line,
                step: self.step,
                text: self.text.clone(),
                reason: other.to_string(),
            },
        }
    }

    fn failure(&self, reason: String) -> Error {
        Error::Step {
            file: self.build.file.file.clone(),
            line: self.line,
            step: self.step,
            text: self.text.clone(),
            reason,
        }
    }

    /// The variables words expand against: ARGs, then ENV on top, as in
    /// Docker.
    fn vars(&self) -> BTreeMap<String, String> {
        let mut vars = self.args.clone();
        for entry in self.env() {
            if let Some((name, value)) = entry.split_once('=') {
                vars.insert(name.to_string(), value.to_string());
            }
        }
        vars
    }

    fn env(&self) -> Vec<String> {
        self.result
            .config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }

    fn expand(&self, word: &Word) -> Result<String, Error> {
        word.expand(&self.vars())
            .map_err(|err| self.failure(format!("expanding {:?}: {err}", word.raw)))
    }

    fn container_config(&mut self) -> &mut ContainerConfig {
        self.result
            .config
            .config
            .get_or_insert_with(Default::default)
    }

    fn workdir(&self) -> String {
        self.result
            .config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|dir| !dir.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    /// Adds a history entry. A layer's entry gets its time from `stamp` once
    /// the layer exists; configuration entries have none, so that a rebuild
    /// from the cache gives the same configuration.
    fn record_history(&mut self, created_by: String, empty_layer: bool) {
        self.result.config.history.push(History {
            created: None,
            created_by: Some(created_by),
            author: None,
            comment: None,
            empty_layer: empty_layer.then_some(true),
        });
    }

    fn args_list(&self) -> Vec<(String, String)> {
        self.args.clone().into_iter().collect()
    }

    /// Resolves the stage's base: an earlier stage, `scratch`, or an image.
    fn base(&mut self, done: &BTreeMap<usize, StageResult>) -> Result<StageResult, Error> {
        let stage = &self.build.file.stages[self.index];
        if let Some(base) = stage.from.stage.filter(|&base| base < self.index) {
            let mut result = done[&base].clone();
            result.rootpivot = None;
            result.cached_steps = 0;
            result.executed_steps = 0;
            return Ok(result);
        }

        let global = self.global_args();
        let name = stage
            .from
            .image
            .expand(&global)
            .map_err(|err| self.failure(format!("expanding the image name: {err}")))?;
        let fresh = |top, config: ImageConfig, key| StageResult {
            top,
            created: config.created.clone(),
            config,
            key,
            rootpivot: None,
            cached_steps: 0,
            executed_steps: 0,
        };
        if name.eq_ignore_ascii_case("scratch") {
            let config = ImageConfig {
                architecture: host_architecture().into(),
                os: std::env::consts::OS.into(),
                ..Default::default()
            };
            return Ok(fresh(None, config, StepKey::base("scratch")));
        }

        let image = self.build.store.resolve(&name).map_err(|err| {
            let hint = if name.starts_with("forge") {
                "; run cblock forge to create it"
            } else {
                ""
            };
            self.failure(format!("base image {name:?}: {err}{hint}"))
        })?;
        let config = self.build.store.config(&image)?;
        Ok(fresh(
            image.layers.last().cloned(),
            config,
            StepKey::base(&image.id),
        ))
    }

    /// Executes the base's `ONBUILD` triggers as part of the `FROM` step.
    /// They are taken out of the configuration, so that an image built
    /// from this one does not execute them again (Docker's rule).
    fn run_triggers(&mut self, done: &BTreeMap<usize, StageResult>) -> Result<(), Error> {
        let triggers = self
            .result
            .config
            .config
            .as_mut()
            .and_then(|config| config.on_build.take())
            .unwrap_or_default();
        if triggers.is_empty() {
            return Ok(());
        }
        if !self.build.options.quiet {
            let plural = if triggers.len() == 1 { "" } else { "s" };
            self.build.say(&format!(
                "-- Executing {} build trigger{plural}",
                triggers.len()
            ));
        }
        let from_text = std::mem::take(&mut self.text);
        for trigger in &triggers {
            self.text = format!("ONBUILD {trigger}");
            let instruction = parse_trigger(trigger).map_err(|reason| {
                self.failure(format!(
                    "the base image's ONBUILD trigger {trigger:?} is invalid: {reason}"
                ))
            })?;
            if !self.build.options.quiet {
                self.build.say(&format!("-- Trigger : {trigger}"));
            }
            self.instruction(&instruction, done)
                .map_err(|err| self.wrap(err))?;
        }
        self.text = from_text;
        Ok(())
    }

    /// ARGs declared before the first FROM, with `--build-arg` values.
    fn global_args(&self) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        for decl in &self.build.file.global_args {
            let value = match self.build.options.build_args.get(&decl.name) {
                Some(value) => Some(value.clone()),
                None => decl
                    .default
                    .as_ref()
                    .and_then(|word| word.expand(&vars).ok()),
            };
            if let Some(value) = value {
                vars.insert(decl.name.clone(), value);
            }
        }
        vars
    }

    fn instruction(
        &mut self,
        instruction: &Instruction,
        done: &BTreeMap<usize, StageResult>,
    ) -> Result<(), Error> {
        match &instruction.kind {
            InstructionKind::Run(run) => self.run_step(run, instruction),
            InstructionKind::Add(copy) => self.copy_step(copy, true, done),
            InstructionKind::Copy(copy) => self.copy_step(copy, false, done),
            InstructionKind::Workdir(word) => self.workdir_step(word),
            other => {
                self.config_step(other)?;
                // ARG values reach later steps through the words they expand
                // in and through RUN's environment, so only RUN keys list
                // them, and a changed value first misses at a RUN, as in
                // Docker.
                self.result.key = self.result.key.next(&instruction.text, &[], None);
                let text = instruction.text.clone();
                self.record_history(format!("/bin/sh -c #(nop) {text}"), true);
                Ok(())
            }
        }
    }

    /// Applies an instruction that changes only the image configuration.
    fn config_step(&mut self, kind: &InstructionKind) -> Result<(), Error> {
        match kind {
            InstructionKind::Env(pairs) => {
                for pair in pairs {
                    let value = self.expand(&pair.value)?;
                    let mut env = self.env();
                    let prefix = format!("{}=", pair.key);
                    env.retain(|entry| !entry.starts_with(&prefix));
                    env.push(format!("{}={}", pair.key, value));
                    self.container_config().env = Some(env);
                }
            }
            InstructionKind::Arg(decls) => {
                let global = self.global_args();
                for decl in decls {
                    let value = match self.build.options.build_args.get(&decl.name) {
                        Some(value) => Some(value.clone()),
                        None => match &decl.default {
                            Some(word) => Some(self.expand(word)?),
                            None => global.get(&decl.name).cloned(),
                        },
                    };
                    if let Some(value) = value {
                        self.args.insert(decl.name.clone(), value);
                    }
                }
            }
            InstructionKind::Label(pairs) => {
                for pair in pairs {
                    let value = self.expand(&pair.value)?;
                    self.container_config()
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(pair.key.clone(), value);
                }
            }
            InstructionKind::Maintainer(text) => self.result.config.author = Some(text.clone()),
            InstructionKind::Expose(ports) => {
                for port in ports {
                    let mut port = self.expand(port)?;
                    if !port.contains('/') {
                        port.push_str("/tcp");
                    }
                    self.container_config()
                        .exposed_ports
                        .get_or_insert_with(Default::default)
                        .insert(port, EmptyObject {});
                }
            }
            InstructionKind::Volume(paths) => {
                for path in paths {
                    let path = self.expand(path)?;
                    self.container_config()
                        .volumes
                        .get_or_insert_with(Default::default)
                        .insert(path, EmptyObject {});
                }
            }
            InstructionKind::User(word) => {
                let user = self.expand(word)?;
                self.container_config().user = Some(user);
            }
            InstructionKind::StopSignal(word) => {
                let signal = self.expand(word)?;
                self.container_config().stop_signal = Some(signal);
            }
            InstructionKind::Healthcheck(check) => {
                let healthcheck = healthcheck_config(check);
                self.container_config().healthcheck = Some(healthcheck);
            }
            InstructionKind::Entrypoint(command) => {
                let argv = command.argv.clone();
                let cmd_set = self.cmd_set;
                let config = self.container_config();
                config.entrypoint = Some(argv);
                // As in Docker, a new ENTRYPOINT drops a CMD inherited from
                // the base, which was written for the old entrypoint.
                if !cmd_set {
                    config.cmd = None;
                }
            }
            InstructionKind::Cmd(command) => {
                self.container_config().cmd = Some(command.argv.clone());
                self.cmd_set = true;
            }
            InstructionKind::RootPivot(word) => {
                self.result.rootpivot = Some(self.expand(word)?);
            }
            InstructionKind::Onbuild(trigger) => {
                self.container_config()
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(trigger.text.clone());
            }
            // SHELL is applied by the parser to the commands that follow.
            InstructionKind::Shell(_) => {}
            InstructionKind::Run(_)
            | InstructionKind::Add(_)
            | InstructionKind::Copy(_)
            | InstructionKind::Workdir(_) => {
                unreachable!("file-changing instructions are handled as steps")
            }
        }
        Ok(())
    }

    /// Dates the newest history entry and the stage with a layer's time.
    fn stamp(&mut self, created: Option<String>) {
        if let Some(entry) = self.result.config.history.last_mut() {
            entry.created = created.clone();
        }
        if created.is_some() {
            self.result.created = created;
        }
    }

    /// Looks `key` up in the cache; on a hit moves the stage to the cached
    /// layer and returns true. A miss in a cache-only build is an error.
    fn cache_hit(&mut self, key: &StepKey) -> Result<bool, Error> {
        let Some(entry) = self.build.cached(key, self.step, &self.text)? else {
            return Ok(false);
        };
        if entry.layer.is_some() {
            self.result.top = entry.layer;
        }
        self.stamp(entry.created);
        self.result.key = key.clone();
        self.result.cached_steps += 1;
        Ok(true)
    }

    /// Commits the mount as the stage's new top layer and records it under
    /// `key`.
    fn commit(&mut self, mount_id: &str, key: StepKey) -> Result<(), Error> {
        let layer = self.build.store.commit_mount(mount_id)?;
        self.build.hold(&layer.chain_id)?;
        self.build.release(mount_id)?;
        let created = self.build.record_layer(&key, &layer.chain_id)?;
        self.stamp(Some(created));
        self.result.top = Some(layer.chain_id);
        self.result.key = key;
        self.result.executed_steps += 1;
        Ok(())
    }

    fn run_step(&mut self, run: &Run, instruction: &Instruction) -> Result<(), Error> {
        let argv = run_argv(run);
        let mut key_text = format!("RUN {}", argv.join(" "));
        for heredoc in &run.heredocs {
            key_text.push('\n');
            key_text.push_str(&heredoc.content);
        }
        let key = self.result.key.next(&key_text, &self.args_list(), None);
        self.record_history(instruction.text.clone(), false);
        if self.cache_hit(&key)? {
            return Ok(());
        }

        let label = format!("s{}-{}", self.index, self.step);
        let (mount_id, rootfs) = self.build.mount(&label, self.result.top.as_deref())?;
        let env = self.run_env();
        let cwd = self.workdir();
        let (user, groups) = self.resolve_user(&rootfs)?;
        let resolv = Path::new("etc/resolv.conf");
        let had_resolv = fs::symlink_metadata(rootfs.join(resolv)).is_ok();
        let network = match run.network {
            crate::cblockfile::ast::RunNetwork::None => super::Network::None,
            crate::cblockfile::ast::RunNetwork::Host => super::Network::Host,
            crate::cblockfile::ast::RunNetwork::Default => self.build.options.network,
        };

        let container_id = format!("build-{}-{}", self.build.id, label);
        let process = StepProcess {
            id: &container_id,
            rootfs: &rootfs,
            argv: &argv,
            env: &env,
            cwd: &cwd,
            user,
            groups: &groups,
            network,
            hostname: "cblock-build",
            work_dir: &self.build.work_dir,
        };
        let status = self.build.runner.run(&process)?;

        // The host's resolv.conf is bound over a file the runtime creates
        // when the image has none; that empty file is not part of the step.
        if !had_resolv {
            let path = rootfs.join(resolv);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = fs::remove_file(&path);
            }
        }
        if status != 0 {
            self.build.release(&mount_id)?;
            return Err(Error::StepExit {
                file: self.build.file.file.clone(),
                line: self.line,
                step: self.step,
                text: self.text.clone(),
                status,
            });
        }
        self.commit(&mount_id, key)
    }

    /// The environment of a RUN process: the image's ENV, plus the ARGs in
    /// scope that ENV does not set, as Docker gives them.
    fn run_env(&self) -> Vec<String> {
        let mut env = self.env();
        for (name, value) in &self.args {
            let prefix = format!("{name}=");
            if !env.iter().any(|entry| entry.starts_with(&prefix)) {
                env.push(format!("{name}={value}"));
            }
        }
        if !env.iter().any(|entry| entry.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        env
    }

    /// Resolves USER against the stage's own passwd and group files.
    /// Resolves the stage's USER to an owner and its supplementary groups.
    fn resolve_user(&self, rootfs: &Path) -> Result<(Owner, Vec<u32>), Error> {
        let user = self
            .result
            .config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .filter(|user| !user.is_empty());
        match user {
            None => Ok((Owner { uid: 0, gid: 0 }, Vec::new())),
            Some(spec) => {
                let passwd = read_in_root(rootfs, "/etc/passwd")?;
                let group = read_in_root(rootfs, "/etc/group")?;
                let owner = users::resolve_owner(&spec, &passwd, &group)?;
                Ok((owner, users::supplementary_groups(&spec, &passwd, &group)))
            }
        }
    }

    fn resolve_owner(&self, rootfs: &Path, spec: &str) -> Result<Owner, Error> {
        let passwd = read_in_root(rootfs, "/etc/passwd")?;
        let group = read_in_root(rootfs, "/etc/group")?;
        Ok(users::resolve_owner(spec, &passwd, &group)?)
    }

    fn copy_step(
        &mut self,
        copy: &Copy,
        is_add: bool,
        done: &BTreeMap<usize, StageResult>,
    ) -> Result<(), Error> {
        let sources: Vec<String> = copy
            .sources
            .iter()
            .map(|word| self.expand(word))
            .collect::<Result<_, _>>()?;
        let dest = self.expand(&copy.dest)?;
        let dest = if dest.starts_with('/') {
            dest
        } else {
            format!("{}/{}", self.workdir().trim_end_matches('/'), dest)
        };
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(copy::Error::DestNotDirectory { dest }.into());
        }
        let chown = copy.chown.as_ref().map(|w| self.expand(w)).transpose()?;
        let chmod = match &copy.chmod {
            Some(word) => Some(copy::parse_chmod(&self.expand(word)?)?),
            None => None,
        };
        let checksum = match &copy.checksum {
            Some(word) => Some(download::Checksum::parse(&self.expand(word)?)?),
            None => None,
        };
        // Heredoc sources (`COPY <<EOF /dest`) become files named after
        // their terminators, written to the build's scratch space.
        let mut inline = Vec::new();
        if !copy.contents.is_empty() {
            let dir = self.build.work_dir.join(format!("inline-{}", self.step));
            fs::create_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            for heredoc in &copy.contents {
                let path = dir.join(&heredoc.name);
                fs::write(&path, &heredoc.content).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                inline.push((dir.clone(), heredoc.name.clone()));
            }
        }

        // Where the sources come from, and what the cache key says of them.
        // A stage's or an image's layers are mounted only on a cache miss.
        let (source, origin, digest) = match &copy.from {
            Some(CopySource::Stage { index, .. }) => {
                let stage = &done[index];
                let digest = format!("stage:{}", stage.top.clone().unwrap_or_default());
                (
                    Source::Layers(stage.top.clone()),
                    format!("stage {index}"),
                    digest,
                )
            }
            Some(CopySource::Image(reference)) => {
                let image = self.build.store.resolve(reference).map_err(|err| {
                    let stages: Vec<String> = self.build.file.stages[..self.index]
                        .iter()
                        .enumerate()
                        .map(|(index, stage)| match &stage.name {
                            Some(name) => format!("{index} ({name})"),
                            None => index.to_string(),
                        })
                        .collect();
                    let stages = if stages.is_empty() {
                        "none".to_string()
                    } else {
                        stages.join(", ")
                    };
                    self.failure(format!(
                        "COPY --from={reference} names no earlier stage and no image: {err}; \
                         the earlier stages are: {stages}"
                    ))
                })?;
                (
                    Source::Layers(image.layers.last().cloned()),
                    format!("image {reference}"),
                    image.id,
                )
            }
            None => {
                let local: Vec<String> = sources
                    .iter()
                    .filter(|source| !(is_add && download::is_url(source)))
                    .cloned()
                    .collect();
                let paths = copy::resolve_sources(self.build.context_dir, &local)?;
                let digest = super::context::sources_digest(self.build.context_dir, &paths)?;
                (
                    Source::Context(self.build.context_dir.to_path_buf()),
                    "the build context".to_string(),
                    digest,
                )
            }
        };

        self.copy_into_stage(CopyPlan {
            copy,
            is_add,
            sources: &sources,
            dest: &dest,
            chown: chown.as_deref(),
            chmod,
            checksum: checksum.as_ref(),
            source: &source,
            origin: &origin,
            digest,
            inline,
        })
    }

    fn copy_into_stage(&mut self, plan: CopyPlan) -> Result<(), Error> {
        let keyword = if plan.is_add { "ADD" } else { "COPY" };
        let key_text = format!(
            "{keyword} chown={:?} chmod={:?} {} {}",
            plan.chown,
            plan.chmod,
            plan.sources.join(" "),
            plan.dest
        );

        // URLs are downloaded first: their contents are part of the key.
        let downloads = self.build.work_dir.join(format!("add-{}", self.step));
        let mut digest = plan.digest.clone();
        // Each source's directory, `None` for the plan's source, its name,
        // and whether archives in it are unpacked.
        let mut local: Vec<(Option<PathBuf>, String, bool)> = Vec::new();
        for source in plan.sources {
            if plan.is_add && download::is_url(source) {
                // A URL's contents are part of the key, and a cache-only
                // build downloads nothing.
                if self.build.options.cache_only {
                    return Err(Error::CacheMiss {
                        step: self.step,
                        text: self.text.clone(),
                    });
                }
                fs::create_dir_all(&downloads).map_err(|e| Error::Io {
                    path: downloads.clone(),
                    source: e,
                })?;
                let name = download::file_name(source).ok_or_else(|| {
                    self.failure(format!("cannot derive a file name from {source:?}"))
                })?;
                let request = download::Request {
                    url: source,
                    timeout: std::time::Duration::from_secs(ADD_URL_TIMEOUT_SECS),
                    checksum: plan.checksum,
                    max_bytes: ADD_URL_MAX_BYTES,
                };
                self.build.say(&format!(" ---> Fetching {source}"));
                let build = self.build;
                let mut reported = 0u64;
                let mut progress = |received: u64, total: Option<u64>| {
                    // A line per 10% of an announced length, else per 16 MiB.
                    let step = total.map_or(16 << 20, |total| (total / 10).max(1 << 20));
                    if received >= reported + step {
                        reported = received;
                        let share = total
                            .map(|total| format!(" of {:.1} MB", total as f64 / 1e6))
                            .unwrap_or_default();
                        build.say(&format!(
                            " ---> {:.1} MB{share} received",
                            received as f64 / 1e6
                        ));
                    }
                };
                let fetched = download::download(&request, &downloads.join(&name), &mut progress)?;
                self.build.say(&format!(
                    " ---> Fetched {} bytes, sha256:{}",
                    fetched.bytes, fetched.sha256
                ));
                digest.push_str(&fetched.sha256);
                local.push((
                    Some(downloads.clone()),
                    name.clone(),
                    is_archive_name(&name),
                ));
            } else {
                local.push((None, source.clone(), plan.is_add));
            }
        }
        for (dir, name) in &plan.inline {
            let content = fs::read(dir.join(name)).unwrap_or_default();
            digest.push_str(&format!("\0inline\0{name}\0{}", content.len()));
            digest.push_str(&String::from_utf8_lossy(&content));
            local.push((Some(dir.clone()), name.clone(), false));
        }
        let key = self.result.key.next(&key_text, &[], Some(&digest));
        self.record_history(format!("{keyword} {}", plan.sources.join(" ")), false);
        if self.cache_hit(&key)? {
            return Ok(());
        }

        let label = format!("s{}-{}", self.index, self.step);
        let (mount_id, rootfs) = self.build.mount(&label, self.result.top.as_deref())?;
        let owner = match plan.chown {
            Some(spec) => Some(self.resolve_owner(&rootfs, spec)?),
            None => None,
        };
        let (source_root, source_mount) = match plan.source {
            Source::Context(dir) => (dir.clone(), None),
            Source::Layers(top) => {
                let (id, path) = self.build.mount(&format!("{label}-from"), top.as_deref())?;
                (path, Some(id))
            }
        };
        let copied = local.iter().try_for_each(|(root, source, unpack)| {
            let origin = match root {
                None => plan.origin.to_string(),
                Some(_) => "the build's scratch space".to_string(),
            };
            let request = copy::Request {
                source_root: root.as_deref().unwrap_or(&source_root),
                origin: &origin,
                sources: std::slice::from_ref(source),
                dest: plan.dest,
                owner,
                chmod: plan.chmod,
                unpack_archives: *unpack && plan.copy.from.is_none(),
            };
            copy::copy(&request, &rootfs).map(|_| ())
        });
        if let Some(id) = source_mount {
            self.build.release(&id)?;
        }
        if let Err(err) = copied {
            self.build.release(&mount_id)?;
            return Err(err.into());
        }
        let _ = fs::remove_dir_all(&downloads);
        for (dir, _) in &plan.inline {
            let _ = fs::remove_dir_all(dir);
        }
        self.commit(&mount_id, key)
    }

    fn workdir_step(&mut self, word: &Word) -> Result<(), Error> {
        let path = self.expand(word)?;
        let path = if path.starts_with('/') {
            path
        } else {
            format!("{}/{}", self.workdir().trim_end_matches('/'), path)
        };
        self.container_config().working_dir = Some(path.clone());
        self.record_history(format!("WORKDIR {path}"), false);

        let key = self.result.key.next(&format!("WORKDIR {path}"), &[], None);
        if self.cache_hit(&key)? {
            return Ok(());
        }
        let label = format!("s{}-{}", self.index, self.step);
        let (mount_id, rootfs) = self.build.mount(&label, self.result.top.as_deref())?;
        if let Err(err) = rootpath::resolve(&rootfs, &format!("{path}/"), Missing::Create) {
            self.build.release(&mount_id)?;
            return Err(err.into());
        }
        self.commit(&mount_id, key)
    }
}

/// The inputs of one ADD or COPY after expansion.
struct CopyPlan<'p> {
    copy: &'p Copy,
    is_add: bool,
    sources: &'p [String],
    dest: &'p str,
    chown: Option<&'p str>,
    chmod: Option<u32>,
    checksum: Option<&'p download::Checksum>,
    source: &'p Source,
    origin: &'p str,
    digest: String,
    /// Heredoc sources: the directory they were written to, and the name.
    inline: Vec<(PathBuf, String)>,
}

/// Where ADD or COPY reads its sources from.
enum Source {
    Context(PathBuf),
    /// The layers of a stage or an image, up to this chain ID (`None` for
    /// an empty root), mounted only when the step misses the cache.
    Layers(Option<String>),
}

/// PATH of build containers whose image sets none, as Docker's.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Returns the argv of a RUN step. A shell-form command that is only a
/// heredoc (`RUN <<EOF`) runs the heredoc's body as the script; otherwise
/// heredocs are appended to the text so the shell feeds them to the command.
/// Parses a stored `ONBUILD` trigger, such as `RUN make`, into the
/// instruction it registers, with the parser's checks for that instruction.
fn parse_trigger(trigger: &str) -> Result<Instruction, String> {
    let text = format!("FROM scratch\n{trigger}\n");
    let file = crate::cblockfile::parse("ONBUILD trigger", text.as_bytes())
        .map_err(|err| err.to_string())?;
    let mut instructions = file
        .stages
        .into_iter()
        .next()
        .map(|stage| stage.instructions)
        .unwrap_or_default();
    if instructions.len() != 1 {
        return Err(format!(
            "it holds {} instructions instead of one",
            instructions.len()
        ));
    }
    Ok(instructions.remove(0))
}

fn run_argv(run: &Run) -> Vec<String> {
    let Command::Shell(text) = &run.command.command else {
        return run.command.argv.clone();
    };
    if run.heredocs.is_empty() {
        return run.command.argv.clone();
    }
    let shell_len = run.command.argv.len().saturating_sub(1);
    let mut argv: Vec<String> = run.command.argv[..shell_len].to_vec();

    let only_heredoc = text.trim_start().starts_with("<<") && run.heredocs.len() == 1;
    if only_heredoc {
        argv.push(run.heredocs[0].content.clone());
        return argv;
    }
    let mut script = text.clone();
    for heredoc in &run.heredocs {
        script.push('\n');
        script.push_str(&heredoc.content);
        script.push_str(&heredoc.name);
    }
    argv.push(script);
    argv
}

fn healthcheck_config(check: &Healthcheck) -> crate::oci::image_spec::Healthcheck {
    let nanos = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as u64);
    match check {
        Healthcheck::None => crate::oci::image_spec::Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        },
        Healthcheck::Check(check) => {
            let test = match &check.command.command {
                Command::Exec(argv) => {
                    let mut test = vec!["CMD".to_string()];
                    test.extend(argv.iter().cloned());
                    test
                }
                Command::Shell(text) => vec!["CMD-SHELL".to_string(), text.clone()],
            };
            crate::oci::image_spec::Healthcheck {
                test,
                interval: nanos(check.interval),
                timeout: nanos(check.timeout),
                start_period: nanos(check.start_period),
                retries: check.retries,
            }
        }
    }
}

/// Reads a small file of the image, resolved inside its root; a missing
/// file reads as empty.
fn read_in_root(rootfs: &Path, path: &str) -> Result<String, Error> {
    let resolved = match rootpath::resolve(rootfs, path, Missing::Fail) {
        Ok(resolved) => resolved,
        Err(rootpath::Error::NotFound { .. }) => return Ok(String::new()),
        Err(err) => return Err(err.into()),
    };
    let host = rootfs.join(resolved);
    if !host.is_file() {
        return Ok(String::new());
    }
    fs::read_to_string(&host).map_err(|source| Error::Io { path: host, source })
}

/// Returns true for the names ADD unpacks when fetched from a URL, as the
/// original system did.
pub fn is_archive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz", ".tar.zst",
        ".tzst",
    ]
    .iter()
    .any(|suffix| lower.ends_with(suffix))
}

/// The architecture name OCI uses for the host.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
