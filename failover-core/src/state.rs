//! The names of the machine's states (what each one waits for), shared by the machine, the
//! journal and the outcomes.

use serde::{Deserialize, Serialize};

/// The states, named for what they wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum StateName {
    Preflight,
    AcquiringLocks,
    RepublishingRecord,
    AwaitingReplication,
    ReplicationPause,
    ConfirmingLocks,
    Fencing,
    ProbingFence,
    ReadingPositions,
    AwaitingCatchUp,
    CatchUpPause,
    ForcingMirror,
    Recovering,
    OpeningTarget,
    RepointingMirror,
    RecordingLocation,
    ConfirmingRecord,
    PublishingLocation,
    Verifying,
    AwaitingDirectory,
    DirectoryPause,
    UndoingPromotion,
    UndoingFence,
    ConfirmingUndo,
    ReleasingLocks,
    Done,
    AwaitingBackupService,
    BackupServicePause,
    AwaitingPrincipal,
    PrincipalPause,
}

impl StateName {
    /// Every state, in rough order of a run.
    pub const ALL: [StateName; 30] = [
        StateName::Preflight,
        StateName::AcquiringLocks,
        StateName::RepublishingRecord,
        StateName::AwaitingReplication,
        StateName::ReplicationPause,
        StateName::ConfirmingLocks,
        StateName::Fencing,
        StateName::ProbingFence,
        StateName::ReadingPositions,
        StateName::AwaitingCatchUp,
        StateName::CatchUpPause,
        StateName::ForcingMirror,
        StateName::Recovering,
        StateName::OpeningTarget,
        StateName::RepointingMirror,
        StateName::RecordingLocation,
        StateName::ConfirmingRecord,
        StateName::PublishingLocation,
        StateName::Verifying,
        StateName::AwaitingDirectory,
        StateName::DirectoryPause,
        StateName::UndoingPromotion,
        StateName::UndoingFence,
        StateName::ConfirmingUndo,
        StateName::ReleasingLocks,
        StateName::Done,
        StateName::AwaitingBackupService,
        StateName::BackupServicePause,
        StateName::AwaitingPrincipal,
        StateName::PrincipalPause,
    ];

    /// The name as text.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Preflight => "Preflight",
            StateName::AcquiringLocks => "AcquiringLocks",
            StateName::RepublishingRecord => "RepublishingRecord",
            StateName::AwaitingReplication => "AwaitingReplication",
            StateName::ReplicationPause => "ReplicationPause",
            StateName::ConfirmingLocks => "ConfirmingLocks",
            StateName::Fencing => "Fencing",
            StateName::ProbingFence => "ProbingFence",
            StateName::ReadingPositions => "ReadingPositions",
            StateName::AwaitingCatchUp => "AwaitingCatchUp",
            StateName::CatchUpPause => "CatchUpPause",
            StateName::ForcingMirror => "ForcingMirror",
            StateName::Recovering => "Recovering",
            StateName::OpeningTarget => "OpeningTarget",
            StateName::RepointingMirror => "RepointingMirror",
            StateName::RecordingLocation => "RecordingLocation",
            StateName::ConfirmingRecord => "ConfirmingRecord",
            StateName::PublishingLocation => "PublishingLocation",
            StateName::Verifying => "Verifying",
            StateName::AwaitingDirectory => "AwaitingDirectory",
            StateName::DirectoryPause => "DirectoryPause",
            StateName::UndoingPromotion => "UndoingPromotion",
            StateName::UndoingFence => "UndoingFence",
            StateName::ConfirmingUndo => "ConfirmingUndo",
            StateName::ReleasingLocks => "ReleasingLocks",
            StateName::Done => "Done",
            StateName::AwaitingBackupService => "AwaitingBackupService",
            StateName::BackupServicePause => "BackupServicePause",
            StateName::AwaitingPrincipal => "AwaitingPrincipal",
            StateName::PrincipalPause => "PrincipalPause",
        }
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
