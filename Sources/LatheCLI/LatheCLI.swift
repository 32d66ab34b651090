import ArgumentParser
import LatheModels

/// The `lathe` command: lists the subcommands.
public struct LatheCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "lathe",
        abstract: "Shape an open language model to your task, on your own machine.",
        subcommands: [ChatCommand.self, GenerateCommand.self, TokenizeCommand.self, LogprobsCommand.self,
                      InspectCommand.self, SFTCommand.self, DPOCommand.self, ORPOCommand.self, SimPOCommand.self, KTOCommand.self, GRPOCommand.self, RewardCommand.self, PPOCommand.self,
                      PretrainCommand.self, MergeCommand.self, ExportCommand.self, AdapterCommand.self, DataCommand.self, EvalCommand.self,
                      TokenizerCommand.self, BenchCommand.self, PlanCommand.self, AdviseCommand.self, ServeCommand.self])
    public init() {}
}
